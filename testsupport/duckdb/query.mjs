// Runs one SQL query (argv[2]) with DuckDB and prints its rows as JSON.
import { DuckDBInstance } from '@duckdb/node-api';

const instance = await DuckDBInstance.create(':memory:');
const con = await instance.connect();
const result = await con.runAndReadAll(process.argv[2]);
process.stdout.write(JSON.stringify(result.getRowObjectsJson()));
