"""A user's file that does not import: its own error must reach the user, on one line."""

raise RuntimeError("this model needs a GPU library that is not installed")
