"""Validate manifest data against the JSON Schema and build the pydantic :class:`Manifest`.

JSON Schema errors are turned into compiler-style messages: ``file:line:col``, the key path, what
was expected, what was found, and a "did you mean" for misspelt keys and values.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.core.errors import ManifestError, ManifestErrors
from provisioner.manifest import models
from provisioner.manifest.load import ManifestDoc, format_keypath, json_kind
from provisioner.manifest.models import Manifest

MAX_REPORTED = 10
_MODEL_KEYS = ("hf", "civitai", "url")
_SOURCE_ALIASES = {
    "huggingface": "hf",
    "hugging_face": "hf",
    "repo": "hf",
    "hf_repo": "hf",
    "civit": "civitai",
    "civitai_id": "civitai",
    "model_id": "civitai",
    "link": "url",
    "href": "url",
    "download": "url",
}
_PATTERN_HELP = {
    models.HF_REPO_RE: "a repository id 'org/name'",
    models.SUBDIR_RE: "a relative folder path without '..' (e.g. 'flux' or 'styles/anime')",
    models.FILE_NAME_RE: "a plain file name without '/'",
    r"^[A-Za-z0-9_.@-]+$": "letters, digits and _ . @ - only",
    r"^[a-z_][a-z0-9_-]*$": "a lowercase Unix user name",
    r"^\s*\S": "a non-empty value",
    r"^[0-9a-fA-F]{64}$": "a SHA256 of 64 hex characters",
    r"^https?://[^\s]+$": "an http(s):// URL",
    r"^(https://|ssh://|git@|file://)\S+$": "a git URL (https://, ssh://, git@host:..., file://)",
}


@functools.lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The committed manifest JSON Schema (a test keeps it equal to the generated one)."""
    from provisioner.core.resources import schemas_dir

    with (schemas_dir() / "manifest.schema.json").open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def validate_doc(doc: ManifestDoc) -> Manifest:
    """Validate a loaded manifest file; raise :class:`ManifestErrors` with every problem found.

    The pydantic models in strict mode accept exactly what the JSON Schema generated from them
    accepts (a property test holds the two to that), so valid manifests take the fast path and
    the JSON Schema validator runs only to explain a failure with locations.
    """
    from pydantic import ValidationError

    try:
        return Manifest.model_validate(doc.data, strict=True)
    except ValidationError as exc:
        failure = exc
    problems = _schema_problems(doc.data, doc)
    if problems:
        raise ManifestErrors(problems[:MAX_REPORTED])
    raise _pydantic_problems(failure, doc, {})


def build_manifest(
    data: dict[str, Any],
    doc: ManifestDoc | None = None,
    origins: Mapping[str, str] | None = None,
) -> Manifest:
    """Construct the pydantic model from already-merged data; errors map to locations too:
    ``origins`` (dotted key → ``env:NAME``) names the variable that set a value."""
    from pydantic import ValidationError

    try:
        return Manifest.model_validate(data, strict=True)
    except ValidationError as exc:
        raise _pydantic_problems(exc, doc, origins or {}) from None


def _pydantic_problems(
    exc: Any, doc: ManifestDoc | None, origins: Mapping[str, str]
) -> ManifestErrors:
    problems = []
    for err in _matching_branch(exc.errors(), doc)[:MAX_REPORTED]:
        keypath = [k for k in err["loc"] if isinstance(k, str | int)]
        keypath = _strip_union_tags(keypath)
        where = origins.get(".".join(str(k) for k in keypath)) or (
            doc.where(keypath) if doc else None
        )
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(ManifestError(f"at {format_keypath(keypath)}: {msg}", where=where))
    return ManifestErrors(problems)


_SOURCE_CLASS = {"hf": "HFModel", "civitai": "CivitaiModel", "url": "URLModel"}


def _matching_branch(errors: list[Any], doc: ManifestDoc | None) -> list[Any]:
    """For a model entry, keep only the errors of the union member its source key selects."""
    models = doc.data.get("models") if doc else None
    kept = []
    for err in errors:
        loc = err["loc"]
        if len(loc) > 2 and loc[0] == "models" and isinstance(loc[1], int) and models:
            entry = models[loc[1]] if loc[1] < len(models) else None
            source = next(
                (k for k in _SOURCE_CLASS if isinstance(entry, dict) and k in entry), None
            )
            if source and _SOURCE_CLASS[source] not in str(loc[2]):
                continue
        kept.append(err)
    return kept or errors


def _strip_union_tags(keypath: list[str | int]) -> list[str | int]:
    def is_tag(key: str | int) -> bool:
        return isinstance(key, str) and (
            key in {"int", "str"} or any(c in key for c in _SOURCE_CLASS.values())
        )

    return [k for k in keypath if not is_tag(k)]


def _schema_problems(data: dict[str, Any], doc: ManifestDoc) -> list[ManifestError]:
    from jsonschema import Draft202012Validator

    schema = manifest_schema()
    validator = Draft202012Validator(schema)
    problems = [p for e in validator.iter_errors(data) for p in _explain(e, doc, schema, [])]
    return sorted(problems, key=lambda p: _line_col(p.where))


def _line_col(where: str | None) -> tuple[int, int]:
    parts = (where or "").rsplit(":", 2)
    try:
        return int(parts[-2]), int(parts[-1])
    except (ValueError, IndexError):
        return (0, 0)


def _explain(
    error: Any, doc: ManifestDoc, root_schema: dict[str, Any], prefix: list[str | int]
) -> Iterable[ManifestError]:
    keypath: list[str | int] = [*prefix, *error.absolute_path]
    inst = error.instance
    validator = error.validator
    if validator == "additionalProperties" and isinstance(inst, dict):
        allowed = list(error.schema.get("properties", {}))
        for extra in sorted(set(inst) - set(allowed)):
            yield _located(
                doc,
                [*keypath, extra],
                f"unknown key '{extra}'; expected one of: {', '.join(allowed)}",
                _key_hint(extra, allowed),
                at_value=False,
            )
        return
    if validator in {"anyOf", "oneOf"} and _is_model_entry(keypath):
        yield from _explain_model_entry(inst, keypath, doc, root_schema)
        return
    if validator in {"anyOf", "oneOf"} and error.context:
        # Optional fields are `anyOf: [X, null]`; report the non-null branch's complaint.
        # Optional fields are `anyOf: [X, null]`. Prefer a branch whose type matched (its
        # complaint is the useful one); else name every accepted type.
        branches = [
            e for e in error.context if not (e.validator == "type" and e.validator_value == "null")
        ]
        matched = [e for e in branches if e.validator != "type"]
        if matched or len(branches) == 1:
            yield from _explain((matched or branches)[0], doc, root_schema, prefix)
            return
        if branches:
            kinds = [str(e.validator_value) for e in branches]
            found = f"found {json_kind(inst)} {_short(inst)}"
            yield _located(doc, keypath, f"expected {_a(kinds)}, {found}", None)
            return
    yield _located(doc, keypath, _describe(error), _value_hint(error))


def _is_model_entry(keypath: list[str | int]) -> bool:
    return len(keypath) == 2 and keypath[0] == "models" and isinstance(keypath[1], int)


def _explain_model_entry(
    inst: Any, keypath: list[str | int], doc: ManifestDoc, root_schema: dict[str, Any]
) -> Iterable[ManifestError]:
    from jsonschema import Draft202012Validator

    if not isinstance(inst, dict):
        yield _located(
            doc,
            keypath,
            f"expected a mapping with one of {', '.join(_MODEL_KEYS)}, found {json_kind(inst)}",
            "e.g. '- hf: black-forest-labs/FLUX.1-dev' or '- civitai: 618692@691639'",
        )
        return
    present = [k for k in _MODEL_KEYS if k in inst]
    if len(present) != 1:
        found = ", ".join(present) if present else "none"
        guesses = [
            f"did you mean '{_SOURCE_ALIASES[k.lower()]}'?"
            if k.lower() in _SOURCE_ALIASES
            else _did_you_mean(k, list(_MODEL_KEYS))
            for k in inst
        ]
        guesses = [g for g in guesses if g]
        yield _located(
            doc,
            keypath,
            f"a model entry needs exactly one source key (hf, civitai or url); found {found}",
            guesses[0] if guesses else "split it into one entry per source",
        )
        return
    name = {"hf": "HFModel", "civitai": "CivitaiModel", "url": "URLModel"}[present[0]]
    sub_schema = {"$defs": root_schema["$defs"], **root_schema["$defs"][name]}
    for sub in Draft202012Validator(sub_schema).iter_errors(inst):
        yield from _explain(sub, doc, root_schema, keypath)


def _located(
    doc: ManifestDoc,
    keypath: list[str | int],
    msg: str,
    hint: str | None,
    at_value: bool = True,
) -> ManifestError:
    where = doc.where(keypath, at_value)
    return ManifestError(f"at {format_keypath(keypath)}: {msg}", where=where, hint=hint)


def _describe(error: Any) -> str:
    v, inst, value = error.validator, error.instance, error.validator_value
    found = f"found {json_kind(inst)} {_short(inst)}"
    if v == "type":
        return f"expected {_a(value)}, {found}"
    if v == "enum":
        return f"expected one of {', '.join(map(str, value))}; {found}"
    if v == "const":
        return f"expected {value!r}; {found}"
    if v == "pattern":
        what = _PATTERN_HELP.get(value) or error.schema.get("description") or f"to match {value}"
        return f"expected {what}; {found}"
    if v == "required":
        missing = [k for k in value if k not in inst]
        return f"missing required key '{missing[0] if missing else value}'"
    if v in {"minimum", "exclusiveMinimum"}:
        return f"expected a number ≥ {value}; {found}"
    if v in {"maximum", "exclusiveMaximum"}:
        return f"expected a number ≤ {value}; {found}"
    if v == "minLength":
        return "must not be empty"
    return str(error.message)


def _value_hint(error: Any) -> str | None:
    if error.validator == "enum" and isinstance(error.instance, str):
        return _did_you_mean(error.instance, [str(x) for x in error.validator_value])
    if error.validator == "type" and error.validator_value == "array":
        return "write a YAML list: one '- item' per line"
    return None


_KEY_ALIASES = {
    "branch": "ref",
    "tag": "ref",
    "commit": "ref",
    "rev": "revision",
    "folder": "type",
    "sha": "sha256",
    "hash": "sha256",
    "file": "files",
    "filename": "name",
}


def _key_hint(key: str, allowed: list[str]) -> str | None:
    alias = _KEY_ALIASES.get(key.lower())
    if alias in allowed:
        return f"did you mean '{alias}'?"
    return _did_you_mean(key, allowed)


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not match:
        match = [c for c in choices if c.lower() == word.lower()]
    return f"did you mean '{match[0]}'?" if match else None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _a(type_name: Any) -> str:
    names = type_name if isinstance(type_name, list) else [type_name]
    human = {
        "array": "a list",
        "object": "a mapping",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "nothing",
    }
    return " or ".join(human.get(str(n), str(n)) for n in names)
