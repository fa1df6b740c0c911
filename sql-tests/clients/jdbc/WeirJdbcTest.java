// pgjdbc against a running Weir: metadata (what DBeaver, Metabase and other
// JDBC tools read), prepared statements, types, errors.
// Usage: java -cp /usr/share/java/postgresql.jar WeirJdbcTest.java <port>
import java.sql.*;
import java.util.*;

public class WeirJdbcTest {
    static void check(String name, Object actual, Object expected) {
        if (!Objects.equals(actual, expected)) {
            System.out.println("FAIL " + name + ": expected " + expected + ", got " + actual);
            System.exit(1);
        }
        System.out.println("ok   " + name);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/weir";
        try (Connection conn = DriverManager.getConnection(url, "weir", "")) {
            DatabaseMetaData meta = conn.getMetaData();
            check("product name", meta.getDatabaseProductName(), "PostgreSQL");

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            Collections.sort(tables);
            check("getTables", tables, List.of("cities", "trips", "users"));

            List<String> views = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"VIEW"})) {
                while (rs.next()) views.add(rs.getString("TABLE_NAME"));
            }
            check("getTables views", views, List.of("paid_trips"));

            List<String> matviews = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"MATERIALIZED VIEW"})) {
                while (rs.next()) matviews.add(rs.getString("TABLE_NAME"));
            }
            check("getTables materialized views", matviews, List.of("per_country"));

            // Keys, as DBeaver, DataGrip and Metabase read them.
            List<String> keys = new ArrayList<>();
            try (ResultSet rs = meta.getPrimaryKeys(null, "public", "users")) {
                while (rs.next()) {
                    keys.add(rs.getString("COLUMN_NAME") + ":" + rs.getInt("KEY_SEQ") + ":" + rs.getString("PK_NAME"));
                }
            }
            check("getPrimaryKeys", keys, List.of("id:1:users_pkey"));

            List<String> indexes = new ArrayList<>();
            try (ResultSet rs = meta.getIndexInfo(null, "public", "users", false, true)) {
                while (rs.next()) {
                    indexes.add(rs.getString("INDEX_NAME") + ":" + rs.getBoolean("NON_UNIQUE") + ":"
                            + rs.getString("COLUMN_NAME") + ":" + rs.getInt("ORDINAL_POSITION"));
                }
            }
            check("getIndexInfo", indexes, List.of("users_pkey:false:id:1"));

            int imported = 0;
            try (ResultSet rs = meta.getImportedKeys(null, "public", "users")) {
                while (rs.next()) imported++;
            }
            check("getImportedKeys", imported, 0);

            Set<String> typeNames = new HashSet<>();
            try (ResultSet rs = meta.getTypeInfo()) {
                while (rs.next()) typeNames.add(rs.getString("TYPE_NAME"));
            }
            check("getTypeInfo", typeNames.containsAll(List.of("bool", "int8", "text", "float8", "timestamp")), true);

            List<String> userColumns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "users", "%")) {
                while (rs.next()) {
                    userColumns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getString("IS_NULLABLE"));
                }
            }
            check("getColumns users", userColumns, List.of("id:int8:NO", "name:text:NO", "country:text:YES"));

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "trips", "%")) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
            check("getColumns", columns, List.of("id:int8", "city:text", "fare:float8",
                    "distance_km:float8", "started_at:timestamp", "paid:bool"));

            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT id, fare, started_at FROM trips WHERE city = ? AND fare > ? ORDER BY id")) {
                ps.setString(1, "berlin");
                ps.setDouble(2, 10.0);
                List<String> rows = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        rows.add(rs.getLong(1) + "/" + rs.getDouble(2) + "/" + rs.getTimestamp(3));
                    }
                }
                check("prepared statement", rows,
                        List.of("1/12.5/2024-01-01 08:00:00.0", "6/22.0/2024-01-01 11:45:00.0"));
            }

            // Executed often enough, pgjdbc switches to a named server-side
            // statement and binary transfer.
            try (PreparedStatement ps = conn.prepareStatement("SELECT count(*) FROM trips WHERE paid = ?")) {
                for (int i = 0; i < 7; i++) {
                    ps.setBoolean(1, i % 2 == 0);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        check("server-prepared " + i, rs.getLong(1), i % 2 == 0 ? 4L : 2L);
                    }
                }
            }

            try (Statement st = conn.createStatement()) {
                try {
                    st.executeQuery("SELECT * FROM no_such_table");
                    check("error", "no error", "an error");
                } catch (SQLException e) {
                    check("error sqlstate", e.getSQLState(), "42P01");
                }
                try (ResultSet rs = st.executeQuery("SELECT count(*) AS n FROM trips WHERE fare IS NULL")) {
                    rs.next();
                    check("after error", rs.getLong("n"), 1L);
                }
            }
        }
        // executeBatch, as every JVM tool writes: several Bind/Execute
        // pairs before one Sync, each with its own update count.
        try (Connection conn = DriverManager.getConnection(url, "weir", "")) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE batch_rows (id BIGINT PRIMARY KEY, name TEXT)");
            }
            int[] counts;
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO batch_rows (id, name) VALUES (?, ?)")) {
                for (int i = 1; i <= 500; i++) {
                    ps.setLong(1, i);
                    ps.setString(2, "row " + i);
                    ps.addBatch();
                }
                counts = ps.executeBatch();
            }
            check("executeBatch count", counts.length, 500);
            int[] ones = new int[500];
            Arrays.fill(ones, 1);
            check("executeBatch update counts", Arrays.toString(counts), Arrays.toString(ones));
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT count(*), min(id), max(id) FROM batch_rows")) {
                rs.next();
                check("executeBatch rows", rs.getLong(1) + "/" + rs.getLong(2) + "/" + rs.getLong(3), "500/1/500");
            }
        }
        System.out.println("jdbc client: all checks passed");
    }
}
