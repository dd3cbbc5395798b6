// pgjdbc (Debian's libpostgresql-jdbc-java) against a live Blueshift cluster, for the
// client-matrix test (tests/e2e/clients.rs). Run as a single-file program:
//
//   java -cp /usr/share/java/postgresql.jar tests/clients/JdbcClient.java HOST PORT USER PASSWORD
//
// Creates a table, loads rows with a prepared statement run more than 5 times (pgjdbc
// switches to a named server-side statement after 5), reads them back with fetch size 1
// and autocommit off (a portal fetched one row per Execute), and browses
// DatabaseMetaData.getTables / getColumns. Prints "ok pgjdbc" or throws.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.sql.Types;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcClient {
    static void expect(Object got, Object want, String what) {
        if (got == null ? want != null : !got.equals(want)) {
            throw new AssertionError(what + ": got " + got + ", want " + want);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/dev";
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("sslmode", "disable");
        try (Connection c = DriverManager.getConnection(url, props)) {
            try (Statement s = c.createStatement()) {
                s.execute("drop table if exists jdbc_t");
                s.execute("create table jdbc_t (id integer not null, name varchar(20), "
                        + "amount decimal(10,2), day date) distkey(id)");
            }
            try (PreparedStatement ins = c.prepareStatement(
                    "insert into jdbc_t (id, name, amount, day) values (?, ?, ?, ?)")) {
                for (int i = 1; i <= 7; i++) {
                    ins.setInt(1, i);
                    if (i == 7) {
                        ins.setNull(2, Types.VARCHAR);
                    } else {
                        ins.setString(2, "name" + i);
                    }
                    ins.setBigDecimal(3, new BigDecimal(i + ".25"));
                    ins.setDate(4, Date.valueOf("2024-01-0" + i));
                    expect(ins.executeUpdate(), 1, "insert " + i);
                }
            }
            // A prepared query run more than 5 times.
            try (PreparedStatement q = c.prepareStatement(
                    "select name, amount from jdbc_t where id = ?")) {
                for (int i = 1; i <= 7; i++) {
                    q.setInt(1, i);
                    try (ResultSet rs = q.executeQuery()) {
                        expect(rs.next(), true, "row " + i);
                        expect(rs.getString(1), i == 7 ? null : "name" + i, "name " + i);
                        expect(rs.getBigDecimal(2), new BigDecimal(i + ".25"), "amount " + i);
                        expect(rs.next(), false, "one row for " + i);
                    }
                }
            }
            // Fetch size 1 with autocommit off: a portal fetched a row at a time.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(1);
                List<Integer> ids = new ArrayList<>();
                try (ResultSet rs = s.executeQuery("select id, day from jdbc_t order by id")) {
                    while (rs.next()) {
                        ids.add(rs.getInt(1));
                        expect(rs.getDate(2).toString(), "2024-01-0" + rs.getInt(1), "day");
                    }
                }
                expect(ids, List.of(1, 2, 3, 4, 5, 6, 7), "ids fetched one at a time");
            }
            c.commit();
            c.setAutoCommit(true);

            DatabaseMetaData md = c.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "jdbc_t", new String[] {"TABLE"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
                }
            }
            expect(tables, List.of("public.jdbc_t"), "getTables");
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "jdbc_t", null)) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getInt("DATA_TYPE")
                            + ":" + rs.getInt("NULLABLE"));
                }
            }
            expect(columns, List.of(
                    "id:" + Types.INTEGER + ":" + DatabaseMetaData.columnNoNulls,
                    "name:" + Types.VARCHAR + ":" + DatabaseMetaData.columnNullable,
                    "amount:" + Types.NUMERIC + ":" + DatabaseMetaData.columnNullable,
                    "day:" + Types.DATE + ":" + DatabaseMetaData.columnNullable),
                    "getColumns");
        }
        System.out.println("ok pgjdbc");
    }
}
