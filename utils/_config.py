"""Collection-wide settings kept in one place (forks change them here, then run
``python -m utils.labs relink`` and ``make labs``)."""

#: GitHub ``owner/name`` of the collection; used for Colab badges and the Colab install.
REPOSITORY = "dl-labs/dl-labs"
#: Git ref the Colab badges and the Colab install point at. None: the release tag ``v<version>``
#: (``utils.__version__``, from pyproject.toml), so a notebook opened from a badge and the helpers
#: its setup cell installs always come from the same release. A fork that does not tag releases
#: can set "main" (then notebooks and helpers may drift apart between runs).
REF: str | None = None
#: Environment variable that replaces the setup cell's pip requirement (tests install a local wheel).
INSTALL_ENV = "DL_LABS_INSTALL"
#: Default seed of :func:`utils.seed_everything` (the env var ``DL_LABS_SEED`` overrides it).
DEFAULT_SEED = 0
