"""The metric store (groups of pushed families) and its consistency checks."""
