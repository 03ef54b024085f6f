"""langspec: the spec language, its compiler and executors, and the `langspec` command.

Importing the package imports nothing heavy; the CLI loads torch and Ray only when a command needs them."""


def connect(store: str = "results"):
    """A read-only DuckDB connection to a store, with the analyses that take only a run as views of the
    last completed run (store.queries.register_views):
    `with langspec.connect("results") as con: con.sql("SELECT * FROM run_metrics(last_run())")`.

    Safe while a run writes the store: it waits for the run's current transaction (seconds) and
    then sees whole tasks only, as of its opening. The run waits while it is open: close it when done."""
    from store.connections import connect_read_only
    from store.queries import register_views

    con = connect_read_only(store)
    register_views(con)
    return con
