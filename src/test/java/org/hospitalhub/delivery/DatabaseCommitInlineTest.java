package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

import org.h2.jdbcx.JdbcDataSource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.postgresql.ds.PGSimpleDataSource;

/**
 * {@link Database#committing}: the last statement of a transaction's last deferred work (the federation outbox's
 * batch, a node's reports) carries the commit on PostgreSQL (the local server's database {@code test}): one round trip
 * less, with the same outcome as a separate commit, whether it succeeds or fails.
 */
class DatabaseCommitInlineTest {

    private final String table = "commit_inline_" + ProcessHandle.current().pid() + "_" + System.nanoTime();
    private PGSimpleDataSource pg;

    @BeforeEach
    void create() throws SQLException {
        pg = new PGSimpleDataSource();
        pg.setUrl("jdbc:postgresql://127.0.0.1:5432/test");
        pg.setUser("postgres");
        try (Connection c = pg.getConnection(); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE " + table + " (v INT PRIMARY KEY)");
        }
    }

    @AfterEach
    void drop() throws SQLException {
        try (Connection c = pg.getConnection(); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS " + table);
        }
    }

    private List<Integer> committedRows() {
        List<Integer> out = new ArrayList<>();
        try (Connection c = pg.getConnection(); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT v FROM " + table + " ORDER BY v")) {
            while (rs.next()) {
                out.add(rs.getInt(1));
            }
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
        return out;
    }

    private void insert(Connection c, String sql, int... vs) throws SQLException {
        try (PreparedStatement p = c.prepareStatement(sql)) {
            p.setArray(1, c.createArrayOf("int4", java.util.Arrays.stream(vs).boxed().toArray()));
            p.execute();
        }
    }

    private String insertSql() {
        return "INSERT INTO " + table + " (v) SELECT * FROM unnest(?::int[])";
    }

    @Test
    void theLastDeferredStatementCommitsTheWholeTransactionWithIt() throws SQLException {
        List<String> seen = new ArrayList<>();
        Database.inTransaction(pg, c -> {
            insert(c, insertSql(), 1);
            Database.afterCommit(() -> seen.add("after commit: " + committedRows()));
            Database.beforeCommit(c, "first", () -> cc -> {
                // not the last deferred work: unchanged, and nothing committed yet
                assertEquals(insertSql(), Database.committing(cc, insertSql()));
                insert(cc, insertSql(), 2);
            });
            Database.beforeCommit(c, "last", () -> cc -> {
                String sql = Database.committing(cc, insertSql());
                assertEquals(insertSql() + "; COMMIT", sql);
                assertEquals(List.of(), committedRows(), "nothing visible before the last statement");
                insert(cc, sql, 3);
                // committed by that statement: another connection sees all three rows before the transaction ends
                seen.add("inside: " + committedRows());
            });
            return null;
        });
        assertEquals(List.of("inside: [1, 2, 3]", "after commit: [1, 2, 3]"), seen);
        // the connection went back to the pool usable: a next transaction commits as usual
        Database.inTransaction(pg, c -> {
            insert(c, insertSql(), 4);
            return null;
        });
        assertEquals(List.of(1, 2, 3, 4), committedRows());
    }

    @Test
    void aFailingLastStatementCommitsNothingAndTheTransactionRollsBack() throws SQLException {
        List<String> ran = new ArrayList<>();
        SQLException e = assertThrows(SQLException.class, () -> Database.inTransaction(pg, c -> {
            insert(c, insertSql(), 1);
            Database.afterCommit(() -> ran.add("after commit"));
            Database.afterRollback(() -> ran.add("after rollback"));
            Database.beforeCommit(c, "last", () -> cc -> insert(cc, Database.committing(cc, insertSql()), 2, 2));
            return null;
        }));
        assertTrue(e.getMessage().contains("duplicate key"), e.getMessage());
        assertEquals(List.of("after rollback"), ran);
        assertEquals(List.of(), committedRows(), "neither the earlier statement nor the failing one");
    }

    @Test
    void deferringMoreAfterTheCommittingStatementIsRefused() {
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Database.inTransaction(pg, c -> {
            Database.beforeCommit(c, "last", () -> cc -> {
                insert(cc, Database.committing(cc, insertSql()), 1);
                Database.beforeCommit(cc, "more", () -> ccc -> insert(ccc, insertSql(), 2));
            });
            return null;
        }));
        assertTrue(e.getMessage().contains("deferred more"), e.getMessage());
    }

    @Test
    void unchangedOutsideDeferredWorkAndOnAnotherDatabase() throws SQLException {
        try (Connection c = pg.getConnection()) {
            assertEquals(insertSql(), Database.committing(c, insertSql()), "outside any transaction");
        }
        Database.inTransaction(pg, c -> {
            assertEquals(insertSql(), Database.committing(c, insertSql()), "the transaction's own work, not deferred");
            return null;
        });
        JdbcDataSource h2 = new JdbcDataSource();
        h2.setURL("jdbc:h2:mem:commit-inline-" + System.nanoTime() + ";DB_CLOSE_DELAY=-1");
        List<String> sql = new ArrayList<>();
        Database.inTransaction(h2, c -> {
            Database.beforeCommit(c, "last", () -> cc -> sql.add(Database.committing(cc, "SELECT 1")));
            return null;
        });
        assertEquals(List.of("SELECT 1"), sql, "H2: committed by the usual commit");
    }

    // statements sent ahead of the committing one (Database.ahead)

    /** Inserts v as a statement sent ahead, failing (an error naming it) unless exactly one row was inserted. */
    private Database.Ahead insertAhead(int v) {
        return new Database.Ahead("WITH ins AS (INSERT INTO " + table + " (v) SELECT ? WHERE ? > 0 ON CONFLICT DO NOTHING "
                + "RETURNING v) SELECT CAST(CASE WHEN COUNT(*) = 1 THEN '0' ELSE 'row ' || ? || ' not inserted' END AS int) "
                + "FROM ins", (ps, i) -> {
                    ps.setInt(i++, v);
                    ps.setInt(i++, v);
                    ps.setInt(i++, v);
                    return i;
                });
    }

    /** The last deferred work's committing statement, as the federation outbox writes it: rows in, their values out. */
    private List<Integer> committingInsert(Connection c, int... vs) throws SQLException {
        return Database.executeCommitting(c, "INSERT INTO " + table + " (v) SELECT * FROM unnest(?::int[]) RETURNING v",
                (ps, i) -> {
                    ps.setArray(i++, c.createArrayOf("int4", java.util.Arrays.stream(vs).boxed().toArray()));
                    return i;
                }, rs -> {
                    List<Integer> out = new ArrayList<>();
                    while (rs.next()) {
                        out.add(rs.getInt(1));
                    }
                    return out;
                });
    }

    @Test
    void statementsSentAheadGoWithTheCommittingStatementAndItsOwnResultIsRead() throws SQLException {
        List<String> seen = new ArrayList<>();
        Database.inTransaction(pg, c -> {
            Database.ahead(c, insertAhead(1));
            Database.ahead(c, insertAhead(2));
            assertEquals(List.of(), rowsSeenBy(c), "not sent yet: what this transaction reads does not have them");
            Database.beforeCommit(c, "last", () -> cc -> {
                seen.add("own result: " + committingInsert(cc, 3, 4));
                seen.add("inside: " + committedRows()); // committed by that round trip
            });
            return null;
        });
        assertEquals(List.of("own result: [3, 4]", "inside: [1, 2, 3, 4]"), seen);
    }

    @Test
    void aStatementSentAheadThatFailsItsCheckCommitsNothing() throws SQLException {
        List<String> ran = new ArrayList<>();
        SQLException e = assertThrows(SQLException.class, () -> Database.inTransaction(pg, c -> {
            insert(c, insertSql(), 7);
            Database.ahead(c, insertAhead(-5)); // inserts nothing: its check fails
            Database.afterCommit(() -> ran.add("after commit"));
            Database.afterRollback(() -> ran.add("after rollback"));
            Database.beforeCommit(c, "last", () -> cc -> committingInsert(cc, 8));
            return null;
        }));
        assertTrue(e.getMessage().contains("row -5 not inserted"), e.getMessage());
        assertEquals(List.of("after rollback"), ran);
        assertEquals(List.of(), committedRows(), "neither the earlier statement, the one ahead nor the committing one");
    }

    @Test
    void withoutACommittingStatementTheyRunAloneBeforeTheCommitOrWhenAsked() throws SQLException {
        Database.inTransaction(pg, c -> {
            Database.ahead(c, insertAhead(1));
            Database.runAhead(c); // before reading what it writes
            assertEquals(List.of(1), rowsSeenBy(c));
            Database.ahead(c, insertAhead(2));
            Database.ahead(c, insertAhead(3));
            return null; // no deferred work: run before the usual commit
        });
        assertEquals(List.of(1, 2, 3), committedRows());
        Database.inTransaction(pg, c -> {
            Database.ahead(c, insertAhead(4));
            // a committing statement that does not carry them (it reads its own first result only): they run first
            Database.beforeCommit(c, "last", () -> cc -> insert(cc, Database.committing(cc, insertSql()), 5));
            return null;
        });
        assertEquals(List.of(1, 2, 3, 4, 5), committedRows());
        try (Connection c = pg.getConnection()) {
            Database.ahead(c, insertAhead(6)); // outside a transaction: at once
        }
        assertEquals(List.of(1, 2, 3, 4, 5, 6), committedRows());
        JdbcDataSource h2 = new JdbcDataSource();
        h2.setURL("jdbc:h2:mem:ahead-" + System.nanoTime() + ";DB_CLOSE_DELAY=-1");
        List<Integer> h2Rows = new ArrayList<>();
        Database.inTransaction(h2, c -> {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE t (v INT PRIMARY KEY)");
            }
            Database.ahead(c, new Database.Ahead("INSERT INTO t (v) VALUES (?)", (ps, i) -> {
                ps.setInt(i++, 1);
                return i;
            }));
            Database.beforeCommit(c, "last", () -> cc -> h2Rows.addAll(Database.executeCommitting(cc,
                    "SELECT v FROM t ORDER BY v", (ps, i) -> i, rs -> {
                        List<Integer> out = new ArrayList<>();
                        while (rs.next()) {
                            out.add(rs.getInt(1));
                        }
                        return out;
                    })));
            return null;
        });
        assertEquals(List.of(1), h2Rows, "H2: run alone before the last statement, committed as usual");
    }

    @Test
    void sendingAheadAfterTheCommittingStatementIsRefused() {
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Database.inTransaction(pg, c -> {
            Database.beforeCommit(c, "last", () -> cc -> {
                committingInsert(cc, 1);
                Database.ahead(cc, insertAhead(2));
            });
            return null;
        }));
        assertTrue(e.getMessage().contains("nothing can follow"), e.getMessage());
    }

    private List<Integer> rowsSeenBy(Connection c) throws SQLException {
        List<Integer> out = new ArrayList<>();
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT v FROM " + table + " ORDER BY v")) {
            while (rs.next()) {
                out.add(rs.getInt(1));
            }
        }
        return out;
    }
}
