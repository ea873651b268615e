"""Which crates the corpus reads: the crate list, and the newest version of each under the source.

Crates are laid out as Debian ships them: `<source>/<crate>-<version>/`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import TrainerError

DEFAULT_CRATE_LIST = Path(__file__).with_name("crates.txt")

_CRATE_DIR = re.compile(r"^(?P<name>.+?)-(?P<version>\d+\.\d+\.\d+\S*)$")


@dataclass(frozen=True)
class Crate:
    name: str
    version: str
    path: Path


def lib_names(crate: Crate) -> set[str]:
    """The names the crate's own code and tests call it by: `foo_bar` for `foo-bar`, and the
    `[lib] name` of its Cargo.toml when it sets one."""
    names = {crate.name.replace("-", "_")}
    try:
        manifest = tomllib.loads((crate.path / "Cargo.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return names
    lib = manifest.get("lib")
    if isinstance(lib, dict) and isinstance(lib.get("name"), str):
        names.add(lib["name"])
    return names


def crate_versions(source: Path) -> dict[str, tuple[str, ...]]:
    """Crate name -> the versions `source` has (directories `name-version`, Debian's layout)."""
    found: dict[str, list[str]] = {}
    for entry in sorted(os.listdir(source)) if source.is_dir() else []:
        match = _CRATE_DIR.match(entry)
        if match:
            found.setdefault(match["name"], []).append(match["version"])
    return {name: tuple(versions) for name, versions in found.items()}


def satisfies(requirement: str, version: str) -> bool:
    """A caret/tilde/exact requirement's major (0.minor for 0.x) against a version; other forms match by name only."""
    m = re.match(r"^\s*[\^~=]?\s*(\d+)(?:\.(\d+))?", requirement)
    if not m or any(op in requirement for op in ("<", ">", ",", "*")):
        return True
    have = version.split(".")
    major, minor = m.group(1), m.group(2)
    return have[0] == major and (major != "0" or minor is None or have[1] == minor)


def missing_dev_dependency(key: str, spec: object, versions: dict[str, tuple[str, ...]], source: Path) -> str | None:
    """Why a dev-dependency (`key = spec` in Cargo.toml) cannot be had from `source` offline, or None."""
    table = spec if isinstance(spec, dict) else {"version": spec}
    if "path" in table or "git" in table:
        return "a path or git dependency"
    package = str(table.get("package", key))
    requirement = str(table.get("version", "*"))
    if not any(satisfies(requirement, v) for v in versions.get(package, ())):
        return f"{package} {requirement} not in {source}"
    return None


def unlinkable_dev_dependencies(crate: Crate, versions: dict[str, tuple[str, ...]]) -> set[str]:
    """The names (as code writes them: `foo_bar`) of the crate's dev-dependencies, of any target, that `versions`
    cannot supply offline: tests that use them cannot build here (tokio's loom and mockall tests)."""
    try:
        manifest = tomllib.loads((crate.path / "Cargo.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()
    tables = [manifest.get("dev-dependencies") or {}]
    tables += [t.get("dev-dependencies") or {} for t in (manifest.get("target") or {}).values() if isinstance(t, dict)]
    return {key.replace("-", "_") for table in tables for key, spec in table.items()
            if missing_dev_dependency(key, spec, versions, crate.path.parent)}


def version_key(version: str) -> tuple:
    """Semver order: numeric core, then a release sorts above its pre-releases."""
    core, _, pre = version.partition("-")
    core = core.split("+")[0]
    numbers = tuple(int(p) if p.isdigit() else 0 for p in core.split("."))
    pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return numbers, (0,) if pre else (1,), pre_key


def normalized_name(name: str) -> str:
    """Debian package names use '-' where crate names may use '_' (form_urlencoded)."""
    return name.strip().lower().replace("_", "-")


def discover_crates(source: Path) -> dict[str, Crate]:
    """Newest version of every `<name>-<version>/` directory under `source`, by normalized name."""
    found: dict[str, Crate] = {}
    for entry in sorted(source.iterdir()):
        match = _CRATE_DIR.match(entry.name)
        if not entry.is_dir() or match is None:
            continue
        crate = Crate(match["name"], match["version"], entry)
        key = normalized_name(crate.name)
        if key not in found or version_key(crate.version) > version_key(found[key].version):
            found[key] = crate
    return found


def read_crate_list(path: Path) -> list[str]:
    """One crate name per line; blank lines and `#` comments ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TrainerError(f"cannot read crate list {path}: {exc.strerror}") from None
    names = [line.split("#")[0].strip() for line in lines]
    return [n for n in names if n]


def select_crates(source: Path, crates: list[str] | str | None) -> tuple[list[Crate], list[str]]:
    """(the crates to read, in name order; the wanted names not found under `source`).

    `crates`: None for the default crate list, a list of names, or "all".
    """
    if not source.is_dir():
        raise TrainerError(f"corpus source directory not found: {source}")
    available = discover_crates(source)
    if crates == "all":
        return [available[k] for k in sorted(available)], []
    wanted = read_crate_list(DEFAULT_CRATE_LIST) if crates is None else list(crates)
    missing = sorted({w for w in wanted if normalized_name(w) not in available})
    chosen = sorted({normalized_name(w) for w in wanted} & set(available))
    if not chosen:
        looked_for = f" of: {', '.join(sorted(wanted)[:8])}{' ...' if len(wanted) > 8 else ''})" if wanted else ")"
        raise TrainerError(f"no crates found under {source} (looked for <name>-<version>/ directories" + looked_for)
    return [available[k] for k in chosen], missing
