"""The data that flows through the pipeline: recipes, locks, build reports,
the attributes record of a root, the architecture table and the errors
users can cause. Nothing here touches the network or runs a command."""
