"""Collection-wide settings kept in one place (forks change them here, then run
``python -m utils.labs relink`` and ``make labs``)."""

#: GitHub ``owner/name`` of the collection; used for Colab badges and the Colab install.
REPOSITORY = "dl-labs/dl-labs"
#: Branch the Colab badges and the Colab install point at.
BRANCH = "main"
#: Default seed of :func:`utils.seed_everything` (the env var ``DL_LABS_SEED`` overrides it).
DEFAULT_SEED = 0
