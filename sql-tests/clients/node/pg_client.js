// node-postgres against a running Weir: simple queries, parameters (the
// extended protocol), errors with SQLSTATE. Usage: node pg_client.js <port>
'use strict';
const { Client } = require('pg');
const assert = require('node:assert/strict');

async function main() {
  const port = Number(process.argv[2]);
  const client = new Client({ host: '127.0.0.1', port, user: 'weir', database: 'weir' });
  await client.connect();

  let res = await client.query('SELECT city, count(*) AS n FROM trips GROUP BY city ORDER BY city');
  assert.deepEqual(res.rows.map((r) => [r.city, Number(r.n)]), [['berlin', 3], ['lisbon', 1], ['paris', 2]]);
  console.log('ok   node simple query');

  res = await client.query('SELECT id, fare FROM trips WHERE city = $1 AND paid = $2 ORDER BY id', ['berlin', true]);
  assert.deepEqual(res.rows.map((r) => [Number(r.id), r.fare]), [[1, 12.5], [6, 22]]);
  console.log('ok   node parameters');

  res = await client.query({ text: 'SELECT fare FROM trips WHERE id = $1', values: [5], name: 'fare_by_id' });
  assert.equal(res.rows[0].fare, null);
  res = await client.query({ text: 'SELECT fare FROM trips WHERE id = $1', values: [2], name: 'fare_by_id' });
  assert.equal(res.rows[0].fare, 30);
  console.log('ok   node named prepared statement');

  await assert.rejects(client.query('SELECT * FROM nope'), (err) => {
    assert.equal(err.code, '42P01');
    assert.equal(err.position, '15');
    return true;
  });
  res = await client.query('SELECT CAST(1 AS INT) AS one');
  assert.equal(res.rows[0].one, 1);
  console.log('ok   node error and recovery');

  await client.end();
  console.log('node client: all checks passed');
}

main().catch((err) => {
  console.error('FAIL', err);
  process.exit(1);
});
