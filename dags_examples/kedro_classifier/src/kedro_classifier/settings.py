"""Project settings: Kedro's defaults, spelled out where the example relies on them.

The data root of every catalog entry is ``${runtime_params:data_dir, data}``, so a caller can point one run at a
scratch directory (``kedro run --params data_dir=/tmp/try1`` or ``runtime_params={"data_dir": ...}``) without
touching the configuration. Relative roots resolve against the project directory.
"""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
