"""Root conftest: loads the contracts plugin when the package's pytest11 entry point is absent.

An installed package registers `falsify.plugin` through its entry point; a plain checkout
(no `pip install`) gets it from here. Registering both would be an error, hence the check.
"""

from importlib.metadata import entry_points

if not any(ep.value == "falsify.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["falsify.plugin"]
