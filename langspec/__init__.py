"""langspec: the spec language, its compiler and executors, and the `langspec` command.

Importing the package imports nothing heavy; the CLI loads torch and Ray only when a command needs them."""
