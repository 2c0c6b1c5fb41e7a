"""The fusion tasks, by name: the generator's task codes are indexed by this tuple (order matters)."""

FUSION_TASKS = ("general", "multi-focus", "multi-exposure", "infrared-visible")
