"""Training and benchmark data: the company's tickets, and the public sets read from a path."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from knowledge.errors import InvalidInput, NotFound

BITEXT_CSV = "bitext_customer_support/Bitext_Sample_Customer_Support_Training_Dataset.csv"

_TEXT_KEYS = ("customer_message", "text", "instruction", "message", "question")


def _json_lines(path: Path, code: str):
    """``(line number, parsed value)`` of each non-empty line; a line that is not JSON, or a file that is
    not UTF-8 text, is an :class:`InvalidInput` naming the file and line (not a Python traceback)."""
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path}:{n} is not valid JSON ({exc.msg} at column {exc.colno}).",
                                       code=code) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text; save it as UTF-8.", code=code) from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a directory; pass a JSON-lines file.", code=code) from None


def load_tickets(path: Path) -> list[tuple[str, str]]:
    """``(customer message, intent)`` pairs from a JSON-lines ticket file.

    Lines without an intent are skipped (they cannot teach intents); a malformed line is an error
    naming its line number, because silently training on half a file is worse.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"Ticket file {path} does not exist; pass --tickets with a JSON-lines file.",
                       code="tickets_not_found")
    out: list[tuple[str, str]] = []
    for n, row in _json_lines(path, "bad_tickets"):
        if not isinstance(row, dict):
            raise InvalidInput(f"{path}:{n} is not a JSON object (one ticket per line, with customer_message "
                               "and intent).", code="bad_tickets")
        text = next((row[k] for k in _TEXT_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
        intent = row.get("intent")
        if text and isinstance(intent, str) and intent.strip():
            out.append((text.strip(), intent.strip()))
    return out


def load_out_of_scope(path: Path, *, required: bool = False) -> list[str]:
    """Out-of-scope examples (JSON lines with ``text``, or a JSON string per line).

    An absent file means none, unless ``required`` (the operator named it: a typo must not train a
    model without them, silently). A malformed line is an error naming the file and line number.
    """
    path = Path(path)
    if not path.exists():
        if required:
            raise NotFound(f"Out-of-scope file {path} does not exist; pass --out-of-scope with a JSON-lines file "
                           '(one {"text": "..."} per line), or leave it out.', code="out_of_scope_not_found")
        return []
    out = []
    for n, row in _json_lines(path, "bad_out_of_scope"):
        if isinstance(row, str):
            text = row
        elif isinstance(row, dict):
            text = next((row[k] for k in _TEXT_KEYS if isinstance(row.get(k), str)), "")
        else:
            raise InvalidInput(f'{path}:{n} is not a JSON object with a "text" key.', code="bad_out_of_scope")
        if text.strip():
            out.append(text.strip())
    return out


def load_categories(path: Path) -> dict[str, str]:
    """Each intent's category in a JSON-lines ticket file (``"get_refund" -> "REFUND"``), the most
    frequent one when tickets disagree; lines without both are skipped (the file is read for intents by
    :func:`load_tickets`, which reports malformed lines)."""
    from collections import Counter

    seen: dict[str, Counter[str]] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            intent, category = (row.get("intent"), row.get("category")) if isinstance(row, dict) else (None, None)
            if isinstance(intent, str) and isinstance(category, str) and intent.strip() and category.strip():
                seen.setdefault(intent.strip(), Counter())[category.strip().upper()] += 1
    return {intent: counts.most_common(1)[0][0] for intent, counts in seen.items()}


def load_bitext(shared_data_dir: Path, *, with_tags: bool = False) -> list[tuple[str, ...]]:
    """Bitext public support tickets: ``(instruction, intent)`` (``+ tags`` when asked)."""
    path = Path(shared_data_dir) / BITEXT_CSV
    if not path.exists():
        raise NotFound(f"Bitext tickets not found at {path}.", code="dataset_not_found")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if with_tags:
        return [(r["instruction"].strip(), r["intent"].strip(), r.get("tags", "")) for r in rows]
    return [(r["instruction"].strip(), r["intent"].strip()) for r in rows]


def load_banking77(shared_data_dir: Path, split: str) -> list[tuple[str, str]]:
    """BANKING77 ``train`` or ``test`` as ``(text, category)``."""
    path = Path(shared_data_dir) / "banking77" / f"{split}.csv"
    if not path.exists():
        raise NotFound(f"BANKING77 not found at {path}.", code="dataset_not_found")
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["text"].strip(), r["category"].strip()) for r in csv.DictReader(fh)]


def load_tweeteval(shared_data_dir: Path, split: str) -> list[tuple[str, str]]:
    """TweetEval emotion ``train``/``val``/``test`` as ``(text, emotion name)``."""
    base = Path(shared_data_dir) / "tweeteval_emotion"
    if not (base / f"{split}_text.txt").exists():
        raise NotFound(f"TweetEval emotion not found at {base}.", code="dataset_not_found")
    names = {}
    for line in (base / "mapping.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            idx, name = line.split("\t")
            names[idx.strip()] = name.strip()
    texts = (base / f"{split}_text.txt").read_text(encoding="utf-8").split("\n")
    labels = [x.strip() for x in (base / f"{split}_labels.txt").read_text(encoding="utf-8").split("\n") if x.strip()]
    return [(texts[i].strip(), names[labels[i]]) for i in range(len(labels))]


def tone_training_data(shared_data_dir: Path, *, neutral_texts: list[str] | None = None,
                       n_neutral: int = 1200, seed: int = 0, include_val: bool = True) -> list[tuple[str, str]]:
    """Emotion examples for the tone head: TweetEval train (+ val), plus support-ticket neutral/anger.

    Neutral examples are ordinary requests from the public tickets (and the company's own, when
    given); tickets tagged as offensive language (Bitext tag ``W``) are support-flavoured anger.
    ``include_val=False`` leaves TweetEval's validation split out (the tone branch early-stops on it).
    """
    data = load_tweeteval(shared_data_dir, "train")
    if include_val:
        data += load_tweeteval(shared_data_dir, "val")
    rng = random.Random(seed)
    neutral: list[str] = list(neutral_texts or [])
    try:
        bitext = load_bitext(shared_data_dir, with_tags=True)
    except NotFound:
        bitext = []
    neutral += [t for t, _, tags in bitext if "W" not in tags]
    data += [(t, "anger") for t, _, tags in bitext if "W" in tags]
    rng.shuffle(neutral)
    data += [(t, "neutral") for t in neutral[:n_neutral]]
    return data


def stratified_split(pairs: list[tuple[str, str]], test_size: float = 0.2,
                     seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A stratified split (as sklearn's ``train_test_split(stratify=...)``) of ``(text, label)``."""
    from sklearn.model_selection import train_test_split

    labels = [y for _, y in pairs]
    train, test = train_test_split(pairs, test_size=test_size, random_state=seed, stratify=labels)
    return list(train), list(test)
