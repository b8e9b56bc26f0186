"""The spatial benchmarks' scoring rules, each a pure function of detections that follows its official code.

:mod:`.visor` (VISOR), :mod:`.t2i_compbench` (T2I-CompBench 2D and 3D spatial), :mod:`.geneval`
(GenEval position) and :mod:`.relations3d` (in front of / behind from depth). Each module's
docstring names the official file and every deviation.
"""
