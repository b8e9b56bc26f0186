"""What scorers read: the detection type, detector adapters (OWL-ViT, Grounding DINO, the scene recogniser)
and depth estimators (transformers models, the scene estimator)."""
