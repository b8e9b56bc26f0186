"""Evaluation prompt sets: VISOR's SR2D, the I-LDM paper's "Multi" prompts, and scene-world relations.

* :func:`coco_classes` / :func:`places365_categories`: the class lists the benchmarks draw from,
  shipped in ``prompt_data/`` (sources, licences and cleaning rules in ``prompt_data/PROVENANCE.md``).
* :func:`visor_prompts`: VISOR's 2D spatial prompts (microsoft/VISOR ``create_spatial_phrases.py``),
  regenerated deterministically instead of shipping 25,280 lines: every unordered COCO pair in
  ``itertools.combinations`` order, each of the 4 relations in both directions, with the
  official ``unique_id`` as ``index`` (so results files keyed by VISOR ids line up).
* :func:`multi_prompts`: "{class1}s and {class2}s and ... in a {place}" with 3 to 5 COCO classes
  and one Places365 place (I-LDM paper, section 4.1), seeded.
* :func:`scene_prompt_set`: relational prompts over the scene world's (colour, shape) objects, drawn
  only from a fixed held-out set of triplets (:func:`is_held_out`) that training data must exclude.
* :func:`write_prompts` / :func:`read_prompts`: plain text (one prompt per line) or JSONL records.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from ...fileio import atomic_write_bytes
from ...relations import RELATIONS_2D, RELATIONS_3D
from ...scenes.catalog import COLOURS, RELATION_PHRASES, SHAPES
from ...scenes.held_out import (
    SceneObject,
    _object,
    is_held_out,
)
from .scene_prompts import EVAL_SEED

DATA_PACKAGE = "spatialgen.eval.prompts"
DATA_DIR = "prompt_data"

# VISOR's relation phrases (create_spatial_phrases.py, RELATIONS), keyed by our relation names.
VISOR_RELATION_PHRASES: dict[str, str] = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
VISOR_RELATIONS: tuple[str, ...] = tuple(VISOR_RELATION_PHRASES)

MULTI_PROMPT_COUNT = 1000  # the paper's Multi set size
MULTI_SEED = EVAL_SEED


PluralStyle = Literal["paper", "english"]
Split = Literal["held_out", "train", "all"]


# --------------------------------------------------------------------------------------------- class lists


def _data_text(name: str) -> str:
    return resources.files(DATA_PACKAGE).joinpath(DATA_DIR, name).read_text(encoding="utf-8")


@cache
def coco_classes() -> tuple[str, ...]:
    """The 80 COCO detection class names in category-id order ("person" ... "toothbrush")."""
    return tuple(line.strip() for line in _data_text("coco_classes.txt").splitlines() if line.strip())


@cache
def places365_raw_categories() -> tuple[str, ...]:
    """Places365 category paths exactly as the official list names them ("/a/apartment_building/outdoor")."""
    return tuple(line.split()[0] for line in _data_text("categories_places365.txt").splitlines() if line.strip())


# Qualifiers (the part after a second "/") that read as an adjective before the name ("outdoor
# apartment building", "hockey arena"); the others follow the name ("elevator door", "bakery shop").
_QUALIFIER_AFTER = frozenset({"shop", "door", "platform"})
# Whole-path rewrites where neither order reads as English.
_PLACE_OVERRIDES: dict[str, str] = {
    "temple/asia": "asian temple",
    "desert/vegetation": "desert with vegetation",
    "underwater/ocean_deep": "deep ocean underwater",
}


def clean_places365_name(raw: str) -> str:
    """One official Places365 path -> a phrase for prompts (see ``prompt_data/PROVENANCE.md``).

    Drop the leading "/<letter>/" directory, turn "_" into spaces, and put a "/qualifier" before
    the name ("outdoor apartment building") unless it is a noun that continues the name
    ("elevator door", "subway station platform"); three paths get hand-written phrases. The
    official spellings are kept ("archaelogical excavation", "kindergarden classroom").
    """
    parts = raw.strip().strip("/").split("/")
    if len(parts) < 2 or len(parts[0]) != 1:
        raise ValueError(f"not a Places365 category path: {raw!r} (expected e.g. '/a/airfield')")
    path = "/".join(parts[1:])
    if path in _PLACE_OVERRIDES:
        return _PLACE_OVERRIDES[path]
    name, *qualifiers = (p.replace("_", " ") for p in parts[1:])
    for q in qualifiers:
        name = f"{name} {q}" if q in _QUALIFIER_AFTER else f"{q} {name}"
    return name


@cache
def places365_categories() -> tuple[str, ...]:
    """The 365 Places365 scene names, cleaned for prompts ("airfield", "living room"), in official order."""
    return tuple(clean_places365_name(raw) for raw in places365_raw_categories())


# --------------------------------------------------------------------------------------------- grammar


def indefinite_article(noun: str) -> str:
    """ "a" or "an" for a noun phrase, by its first letter (vowel -> "an").

    Matches what ``inflect.engine().a()`` (used by VISOR) gives for every COCO class and scene-world
    phrase: an airplane, an elephant, an umbrella, an apple, an orange, an oven; a tv, a hot dog.
    The letter rule is wrong for words like "hour" or "unicorn", none of which occur here.
    """
    if not noun.strip():
        raise ValueError("cannot choose an article for an empty noun")
    return "an" if noun.strip()[0].lower() in "aeiou" else "a"


def with_article(noun: str) -> str:
    return f"{indefinite_article(noun)} {noun}"


# English plurals of the COCO classes that "+s" gets wrong.
_IRREGULAR_PLURALS: dict[str, str] = {
    "person": "people",
    "mouse": "mice",
    "knife": "knives",
    "sheep": "sheep",
    "skis": "skis",
    "scissors": "scissors",
    "broccoli": "broccoli",
}


def plural_noun(noun: str, style: PluralStyle = "paper") -> str:
    """Plural of a class name for Multi prompts.

    ``paper``: the paper's template literally, "{class}s" (persons, buss, knifes, wine glasss) --
    what reproduces its prompts. ``english``: irregular forms for person -> people, mouse -> mice,
    knife -> knives, sheep / skis / scissors / broccoli unchanged; "+es" after s, x, z, ch, sh
    (buses, benches, couches, sandwiches, wine glasses, toothbrushes); consonant + y -> "ies";
    otherwise "+s". Multi-word names pluralise their last word.
    """
    if style == "paper":
        return f"{noun}s"
    if style != "english":
        raise ValueError(f"style must be 'paper' or 'english', got {style!r}")
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[last]
    elif re.search(r"(s|x|z|ch|sh)$", last):
        plural = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SpatialPromptRecord:
    """A two-object relational prompt: ``obj_a`` is ``relation`` ``obj_b`` (relation by our name, "left of")."""

    prompt: str
    obj_a: str
    relation: str
    obj_b: str
    index: int


@dataclass(frozen=True)
class MultiPromptRecord:
    """An I-LDM "Multi" prompt: several object classes in one place."""

    prompt: str
    classes: tuple[str, ...]
    place: str
    index: int


@dataclass(frozen=True)
class PartiPromptRecord:
    """A Parti prompt with its category and challenge (``index``: its position in the file, 0-based)."""

    prompt: str
    category: str
    challenge: str
    note: str
    index: int


PromptRecord = SpatialPromptRecord | MultiPromptRecord | PartiPromptRecord
PARTI_FILE = "PartiPrompts.tsv"


def parti_prompts(category: str | None = None, challenge: str | None = None) -> list[PartiPromptRecord]:
    """The 1,632 Parti prompts in file order, optionally only one category and / or challenge.

    Read without CSV quoting: quotation marks inside a prompt ("G I G G L E" painted ...) are part of it.
    """
    rows = [line.split("\t") for line in _data_text(PARTI_FILE).split("\n") if line]
    if rows[0] != ["Prompt", "Category", "Challenge", "Note"] or any(len(r) != 4 for r in rows):
        raise ValueError(f"{PARTI_FILE} is not the Parti prompt table (Prompt, Category, Challenge, Note)")
    records = [PartiPromptRecord(p, c, ch, note, i) for i, (p, c, ch, note) in enumerate(rows[1:])]
    for name, wanted, field_name in (("category", category, "category"), ("challenge", challenge, "challenge")):
        if wanted is None:
            continue
        known = sorted({getattr(r, field_name) for r in records})
        if wanted not in known:
            raise ValueError(f"unknown Parti {name} {wanted!r}; choose one of {', '.join(known)}")
        records = [r for r in records if getattr(r, field_name) == wanted]
    return records


# --------------------------------------------------------------------------------------------- VISOR


def visor_prompts(relations: Sequence[str] = VISOR_RELATIONS) -> list[SpatialPromptRecord]:
    """VISOR's SR2D spatial prompts, "a/an <A> <relation phrase> a/an <B>", in official id order.

    Mirrors ``create_spatial_phrases.py``: for each unordered pair (A, B) of COCO classes in
    ``itertools.combinations`` order, each relation (left, right, above, below) gives "A rel B"
    then "B rel A"; two "and" prompts follow each pair (skipped here) and 80 single-object prompts
    close the file. ``index`` is the official ``unique_id`` (10 ids per pair), so e.g. index 1103 is
    "a kite to the right of a bicycle". 6,320 prompts per relation, 25,280 for all four.
    """
    unknown = [r for r in relations if r not in VISOR_RELATION_PHRASES]
    if unknown or not relations:
        raise ValueError(f"unknown VISOR relation(s) {unknown or list(relations)}; choose from {list(VISOR_RELATIONS)}")
    wanted = set(relations)
    out: list[SpatialPromptRecord] = []
    per_pair = 2 * len(VISOR_RELATIONS) + 2
    for pair_index, (s1, s2) in enumerate(itertools.combinations(coco_classes(), 2)):
        for r_index, relation in enumerate(VISOR_RELATIONS):
            if relation not in wanted:
                continue
            phrase = VISOR_RELATION_PHRASES[relation]
            base = pair_index * per_pair + 2 * r_index
            for offset, (a, b) in enumerate(((s1, s2), (s2, s1))):
                text = f"{with_article(a)} {phrase} {with_article(b)}"
                out.append(SpatialPromptRecord(text, a, relation, b, base + offset))
    return out


# --------------------------------------------------------------------------------------------- Multi


def multi_prompts(
    n: int = MULTI_PROMPT_COUNT,
    seed: int = MULTI_SEED,
    min_classes: int = 3,
    max_classes: int = 5,
    style: PluralStyle = "paper",
) -> list[MultiPromptRecord]:
    """The I-LDM paper's Multi prompts: "{class1}s and {class2}s and ... in a {place}".

    Per prompt, from one ``random.Random(seed)``: k = randint(min_classes, max_classes) distinct
    COCO classes (``sample``), then one cleaned Places365 place (``choice``). ``style="paper"``
    keeps the paper's template verbatim ("{class}s", "in a"); ``"english"`` uses
    :func:`plural_noun`'s English plurals and "an" before a vowel. The paper publishes neither its
    seed nor its prompts, so this reproduces the recipe, not the exact 1,000 prompts.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    classes = coco_classes()
    if not 1 <= min_classes <= max_classes <= len(classes):
        raise ValueError(f"need 1 <= min_classes <= max_classes <= {len(classes)}, got {min_classes}, {max_classes}")
    if style not in ("paper", "english"):
        raise ValueError(f"style must be 'paper' or 'english', got {style!r}")
    places = places365_categories()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        chosen = tuple(rng.sample(classes, rng.randint(min_classes, max_classes)))
        place = rng.choice(places)
        article = "a" if style == "paper" else indefinite_article(place)
        listed = " and ".join(plural_noun(c, style) for c in chosen)
        out.append(MultiPromptRecord(f"{listed} in {article} {place}", chosen, place, i))
    return out


# --------------------------------------------------------------------------------------------- scene world


def _relations(relations: str | Sequence[str]) -> tuple[str, ...]:
    if relations == "2d":
        return RELATIONS_2D
    if relations == "3d":
        return RELATIONS_3D
    if isinstance(relations, str):
        relations = (relations,)
    unknown = [r for r in relations if r not in RELATION_PHRASES]
    if unknown or not relations:
        raise ValueError(
            f"unknown relation(s) {unknown or list(relations)}; use '2d', '3d' or names from {list(RELATION_PHRASES)}"
        )
    return tuple(relations)


def scene_triplets(
    relations: str | Sequence[str] = "2d", split: Split = "held_out"
) -> list[tuple[tuple[str, str], str, tuple[str, str]]]:
    """Every ordered triplet (A, relation, B) of distinct scene objects in ``split``, in a fixed order."""
    if split not in ("held_out", "train", "all"):
        raise ValueError(f"split must be 'held_out', 'train' or 'all', got {split!r}")
    objects = [(c, s) for c in COLOURS for s in SHAPES]
    out = []
    for relation in _relations(relations):
        for a, b in itertools.permutations(objects, 2):
            if split == "all" or is_held_out(a, relation, b) == (split == "held_out"):
                out.append((a, relation, b))
    return out


def scene_prompt_text(a: SceneObject, relation: str, b: SceneObject) -> str:
    """ "a red cube to the left of a blue sphere": the phrasing of the scene world's captions."""
    (ca, sa), (cb, sb) = _object(a), _object(b)
    return f"{with_article(f'{ca} {sa}')} {RELATION_PHRASES[relation]} {with_article(f'{cb} {sb}')}"


def scene_prompt_set(
    relations: str | Sequence[str] = "2d",
    n: int | None = None,
    seed: int = EVAL_SEED,
    split: Split = "held_out",
) -> list[SpatialPromptRecord]:
    """A scene-world relational prompt set, by default only from held-out triplets.

    ``relations``: "2d" (left of, right of, above, below), "3d" (in front of, behind) or names.
    ``n=None`` gives every triplet of the split in a fixed order; otherwise ``n`` prompts with the
    relations in turn, each relation's triplets drawn without replacement by ``random.Random(seed)``.
    """
    rels = _relations(relations)
    pool = {r: scene_triplets((r,), split) for r in rels}
    if n is None:
        chosen = [t for r in rels for t in pool[r]]
    else:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        rng = random.Random(seed)
        for r in rels:
            rng.shuffle(pool[r])
        wanted = {r: len(range(i, n, len(rels))) for i, r in enumerate(rels)}
        short = {r: (k, len(pool[r])) for r, k in wanted.items() if k > len(pool[r])}
        if short:
            raise ValueError(f"split {split!r} has too few triplets for n={n}: (wanted, available) {short}")
        taken = {r: iter(pool[r]) for r in rels}
        chosen = [next(taken[rels[i % len(rels)]]) for i in range(n)]
    return [
        SpatialPromptRecord(scene_prompt_text(a, r, b), f"{a[0]} {a[1]}", r, f"{b[0]} {b[1]}", i)
        for i, (a, r, b) in enumerate(chosen)
    ]


# --------------------------------------------------------------------------------------------- files


def _format(path: Path, fmt: str | None) -> str:
    fmt = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".json") else "txt")
    if fmt not in ("txt", "jsonl"):
        raise ValueError(f"format must be 'txt' or 'jsonl', got {fmt!r}")
    return fmt


def write_prompts(path: str | Path, records: Iterable[PromptRecord | str], fmt: str | None = None) -> Path:
    """Write prompts: ``txt`` (one prompt per line) or ``jsonl`` (one record per line); by suffix if not given.

    Plain strings can only be written as text. Written to a temporary file and renamed, so an
    interrupted write never leaves a truncated prompt set behind.
    """
    path = Path(path)
    fmt = _format(path, fmt)
    lines = []
    for record in records:
        text = record if isinstance(record, str) else record.prompt
        if "\n" in text or "\r" in text or not text.strip():
            raise ValueError(f"prompts must be non-empty single lines, got {text!r}")
        if fmt == "txt":
            lines.append(text)
        elif isinstance(record, str):
            raise ValueError("JSONL needs structured records (SpatialPromptRecord / MultiPromptRecord), not strings")
        else:
            lines.append(json.dumps(asdict(record), ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))
    return path


def read_prompts(path: str | Path, fmt: str | None = None) -> list[str] | list[PromptRecord]:
    """Read what :func:`write_prompts` wrote: a list of strings (txt) or of records (jsonl).

    Text files: blank lines are skipped. JSONL lines with ``classes`` and ``place`` become
    :class:`MultiPromptRecord`, those with ``obj_a`` / ``relation`` / ``obj_b`` :class:`SpatialPromptRecord`.
    """
    path = Path(path)
    fmt = _format(path, fmt)
    text = path.read_text(encoding="utf-8")
    if fmt == "txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    records: list[PromptRecord] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "category" in row:
                records.append(
                    PartiPromptRecord(row["prompt"], row["category"], row["challenge"], row["note"], int(row["index"]))
                )
            elif "classes" in row:
                records.append(MultiPromptRecord(row["prompt"], tuple(row["classes"]), row["place"], int(row["index"])))
            else:
                records.append(
                    SpatialPromptRecord(row["prompt"], row["obj_a"], row["relation"], row["obj_b"], int(row["index"]))
                )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a prompt record ({exc})") from exc
    return records
