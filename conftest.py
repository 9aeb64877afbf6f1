# Wiring only: the plugin and the fixture modules. Logic lives in the tsmigrate package.
pytest_plugins = (
    "pytester",
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
    "fixtures.timeline",  # after fixtures.reporting: its session end records the series before the record is written
)
