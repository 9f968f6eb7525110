from servicekit.migrations import run_env
from target.tables import metadata

run_env(metadata)
