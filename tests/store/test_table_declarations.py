"""A stage's table is declared twice today, as the Arrow schema the stage writes (runners/tables.py,
runners/data.py) and as the DDL the store creates (store/schema/tables.sql): the two must agree,
column by column and type by type, or the ingest casts or fails. The order is free: the store inserts
BY NAME."""

import duckdb
import pyarrow as pa

from runners import tables
from store.task_rows import INFLUENCE_TABLES, STAGE_TABLES
from store.migrations import schema_sql

DUCKDB_TYPES = {pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.string(): "VARCHAR", pa.float64(): "DOUBLE",
                pa.float32(): "FLOAT", pa.bool_(): "BOOLEAN"}


def test_every_stage_table_is_its_arrow_schema_plus_the_task_key():
    con = duckdb.connect()
    con.execute(schema_sql())
    declared = tables.SCHEMAS
    assert set(STAGE_TABLES) <= set(declared)
    for name in STAGE_TABLES:
        described = dict((row[0], row[1]) for row in con.execute(f'DESCRIBE "{name}"').fetchall())  # names from our own list
        expected = {"task_key": "VARCHAR"} | {field.name: DUCKDB_TYPES[field.type] for field in declared[name]}
        assert described == expected, name


def test_the_influence_tables_keep_every_arrow_column_but_seed_and_variant_which_their_task_number_stands_for():
    con = duckdb.connect()
    con.execute(schema_sql())
    for name in INFLUENCE_TABLES:
        if name == "influence_examples":
            continue  # a stage table in all but name: checked with the task key below
        described = dict((row[0], row[1]) for row in con.execute(f'DESCRIBE "{name}_numbered"').fetchall())
        kept = {field.name: DUCKDB_TYPES[field.type] for field in tables.SCHEMAS[name] if field.name not in ("seed", "variant")}
        assert described == {"task_no": "INTEGER"} | kept, name
    described = dict((row[0], row[1]) for row in con.execute('DESCRIBE "influence_examples"').fetchall())
    assert described == {"task_key": "VARCHAR"} | {f.name: DUCKDB_TYPES[f.type] for f in tables.SCHEMAS["influence_examples"]}


def test_every_table_a_stage_writes_is_declared_and_created_and_every_declared_table_is_written():
    from runners.stage import STAGES, stage

    written = {table for name in STAGES for table in stage(name).TABLES} | {"planted_heads"}  # finetune's, with planted
    written |= {"influence_examples", "tracin_cp", "proponents"}  # TracIn's influence, split by store.influence
    assert written == set(tables.SCHEMAS)
    assert written == set(STAGE_TABLES) | set(INFLUENCE_TABLES)
