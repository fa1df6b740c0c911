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
            check("getTables", tables, List.of("cities", "trips"));

            List<String> views = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"VIEW"})) {
                while (rs.next()) views.add(rs.getString("TABLE_NAME"));
            }
            check("getTables views", views, List.of("paid_trips"));

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
        System.out.println("jdbc client: all checks passed");
    }
}
