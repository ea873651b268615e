"""Root conftest: loads the contracts plugin when the package's pytest11 entry point is absent.

An installed package registers `falsify.plugin` through its entry point; a plain checkout
(no `pip install`) gets it from here. Registering both would be an error, hence the check.
"""

from importlib.metadata import entry_points

if not any(ep.value == "falsify.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["falsify.plugin"]


def pytest_ignore_collect(collection_path, config):
    """A run that selects only falsifier tiers (`-m tier1`) need not import the unit tests.

    Tier markers live on contract items (contracts/*.yaml); skipping the collection of
    tests/ keeps `pytest -m tier1` inside its 5-second budget.
    """
    tiers_only = config.option.markexpr.strip() in {"tier1", "tier2", "tier3"}
    tests_dir = config.rootpath / "tests"
    if tiers_only and (collection_path == tests_dir or tests_dir in collection_path.parents):
        return True
    return None
