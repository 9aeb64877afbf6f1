# Wiring only: the plugin and the fixture modules an operator's run loads. Logic lives in the tsmigrate package;
# what only the project's own tests need (pytester, tests/testbed) is wired in tests/conftest.py.
pytest_plugins = (
    "tsmigrate.plugin",
    "fixtures.target",
    "fixtures.servers",
    "fixtures.plan",
    "fixtures.gate",
    "fixtures.run",
    "fixtures.reporting",
    "fixtures.baseline",
    "fixtures.postflight",
    "fixtures.benchmarks",
    "fixtures.timeline",
)
