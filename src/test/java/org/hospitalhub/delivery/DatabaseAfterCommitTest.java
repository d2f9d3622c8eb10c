package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

import org.h2.jdbcx.JdbcDataSource;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link Database#afterCommit}: the wake-ups of the federation sender and step runner rely on it; and
 * {@link Database#beforeCommit}, by which the federation outbox writes a transaction's messages in one batch.
 */
class DatabaseAfterCommitTest {

    private JdbcDataSource ds;

    @BeforeEach
    void table() throws SQLException {
        ds = new JdbcDataSource();
        ds.setURL("jdbc:h2:mem:after-commit-" + System.nanoTime() + ";DB_CLOSE_DELAY=-1");
        try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE t (v INT)");
        }
    }

    private long visibleRows() {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT COUNT(*) FROM t")) {
            rs.next();
            return rs.getLong(1);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void insert(Connection c, int v) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("INSERT INTO t VALUES (" + v + ")");
        }
    }

    @Test
    void anActionRunsOnceTheRowIsCommittedAndVisibleToOthers() throws SQLException {
        List<Long> seen = new ArrayList<>();
        Database.inTransaction(ds, c -> {
            insert(c, 1);
            Database.afterCommit(() -> seen.add(visibleRows()));
            assertEquals(List.of(), seen, "not before the commit");
            return null;
        });
        assertEquals(List.of(1L), seen);
    }

    @Test
    void aRolledBackTransactionRunsNoAction() {
        List<String> ran = new ArrayList<>();
        assertThrows(SQLException.class, () -> Database.inTransaction(ds, c -> {
            insert(c, 1);
            Database.afterCommit(() -> ran.add("woken"));
            throw new SQLException("boom");
        }));
        assertEquals(List.of(), ran);
        assertEquals(0, visibleRows());
        // and the failed transaction's scope is gone: outside any transaction an action runs at once
        Database.afterCommit(() -> ran.add("now"));
        assertEquals(List.of("now"), ran);
    }

    @Test
    void anInnerTransactionsActionRunsAfterTheInnerCommitAndAFailingActionIsOnlyLogged() throws SQLException {
        List<String> ran = new ArrayList<>();
        Database.inTransaction(ds, outer -> {
            Database.afterCommit(() -> ran.add("outer"));
            Database.inTransaction(ds, inner -> {
                insert(inner, 2);
                Database.afterCommit(() -> {
                    throw new IllegalStateException("a broken wake-up");
                });
                Database.afterCommit(() -> ran.add("inner saw " + visibleRows()));
                return null;
            });
            assertEquals(List.of("inner saw 1"), ran);
            return null;
        });
        assertEquals(List.of("inner saw 1", "outer"), ran);
    }

    /** Rows written by the deferred work of a transaction, as the outbox's: collected, then written in one batch. */
    private static class Batch implements Database.BeforeCommit {
        final List<Integer> values = new ArrayList<>();

        @Override
        public void run(Connection c) throws SQLException {
            for (int v : values) {
                insert(c, v);
            }
        }
    }

    @Test
    void deferredWorkIsDoneInTheTransactionJustBeforeItCommitsInTheOrderAskedAndNotAtAllOnRollback() throws SQLException {
        Object first = new Object();
        Object second = new Object();
        List<Long> seenAfter = new ArrayList<>();
        Database.inTransaction(ds, c -> {
            Batch a = Database.beforeCommit(c, first, Batch::new);
            a.values.add(1);
            Database.<Batch>beforeCommit(c, second, Batch::new).values.add(3);
            assertEquals(a, Database.beforeCommit(c, first, Batch::new), "one per key and transaction");
            a.values.add(2);
            // more deferred work asked for while the deferred work runs is done too, before the commit
            Database.<Batch>beforeCommit(c, new Object(), () -> new Batch() {
                @Override
                public void run(Connection c2) throws SQLException {
                    Database.<Batch>beforeCommit(c2, first, Batch::new).values.add(4);
                }
            });
            insert(c, 0);
            Database.afterCommit(() -> seenAfter.add(visibleRows()));
            assertEquals(1, countIn(c), "not yet written");
            return null;
        });
        assertEquals(List.of(5L), seenAfter, "all written, and committed with the transaction");
        assertEquals(List.of(0, 1, 2, 3, 4), valuesInOrder());

        assertThrows(SQLException.class, () -> Database.inTransaction(ds, c -> {
            Database.<Batch>beforeCommit(c, first, Batch::new).values.add(9);
            throw new SQLException("boom");
        }));
        assertThrows(SQLException.class, () -> Database.inTransaction(ds, c -> {
            insert(c, 8);
            Database.beforeCommit(c, first, () -> (Database.BeforeCommit) c2 -> {
                throw new SQLException("deferred work failed");
            });
            return null;
        }), "a failure of the deferred work fails the transaction");
        assertEquals(5, visibleRows(), "neither the rolled back transaction's rows nor the failed one's");
    }

    @Test
    void outsideATransactionOrOnAnotherConnectionNothingIsDeferred() throws SQLException {
        try (Connection c = ds.getConnection()) {
            assertNull(Database.beforeCommit(c, this, Batch::new), "autocommit: the caller writes at once");
        }
        Database.inTransaction(ds, c -> {
            try (Connection other = ds.getConnection()) {
                assertNull(Database.beforeCommit(other, this, Batch::new), "not this transaction's connection");
            }
            Database.inTransaction(ds, inner -> {
                assertNull(Database.beforeCommit(c, this, Batch::new), "the outer connection inside an inner transaction");
                assertNotNull(Database.beforeCommit(inner, this, Batch::new));
                return null;
            });
            return null;
        });
    }

    @Test
    void workThatComesLastRunsAfterTheRestEvenWhenTheRestAddsToIt() throws SQLException {
        List<String> ran = new ArrayList<>();
        Object batchKey = new Object();
        Object otherKey = new Object();
        final class Last implements Database.BeforeCommit {
            final List<Integer> rows = new ArrayList<>();

            @Override
            public void run(Connection c) throws SQLException {
                ran.add("batch " + rows);
                for (int v : rows) {
                    insert(c, v);
                }
            }

            @Override
            public boolean last() {
                return true;
            }
        }
        Database.inTransaction(ds, c -> {
            Database.beforeCommit(c, batchKey, Last::new).rows.add(1);
            assertEquals(true, Database.deferred(c, batchKey));
            assertEquals(false, Database.deferred(c, otherKey));
            Database.BeforeCommit other = x -> {
                ran.add("other");
                Database.beforeCommit(x, batchKey, Last::new).rows.add(2); // adds to the batch not yet written
            };
            Database.beforeCommit(c, otherKey, () -> other);
            return null;
        });
        assertEquals(List.of("other", "batch [1, 2]"), ran, "asked first, yet after the other, and one batch");
        assertEquals(List.of(1, 2), valuesInOrder());
    }

    @Test
    void anAfterRollbackActionRunsOnlyWhenTheTransactionDoesNotCommitAndNeverOutsideOne() throws SQLException {
        List<String> ran = new ArrayList<>();
        Database.inTransaction(ds, c -> {
            insert(c, 1);
            assertEquals(true, Database.inTransactionOn(c));
            Database.afterRollback(() -> ran.add("undone 1"));
            return null;
        });
        assertEquals(List.of(), ran, "committed: nothing to undo");
        assertThrows(SQLException.class, () -> Database.inTransaction(ds, c -> {
            insert(c, 2);
            Database.afterRollback(() -> ran.add("undone 2 (" + visibleRows() + " rows visible)"));
            Database.afterCommit(() -> ran.add("woken 2"));
            throw new SQLException("boom");
        }));
        assertEquals(List.of("undone 2 (1 rows visible)"), ran, "rolled back before the action ran; no after-commit action");
        // a deferred write that fails at the commit fails the transaction: undone too
        assertThrows(SQLException.class, () -> Database.inTransaction(ds, c -> {
            Database.afterRollback(() -> ran.add("undone 3"));
            Database.BeforeCommit failing = x -> {
                try (Statement st = x.createStatement()) {
                    st.execute("INSERT INTO no_such_table VALUES (1)");
                }
            };
            assertNotNull(Database.beforeCommit(c, this, () -> failing));
            return null;
        }));
        assertEquals(List.of("undone 2 (1 rows visible)", "undone 3"), ran);
        Database.afterRollback(() -> ran.add("outside"));
        try (Connection c = ds.getConnection()) {
            assertEquals(false, Database.inTransactionOn(c));
        }
        assertEquals(2, ran.size(), "outside a transaction there is nothing to roll back");
        assertEquals(1, visibleRows());
    }

    private static long countIn(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT COUNT(*) FROM t")) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private List<Integer> valuesInOrder() throws SQLException {
        List<Integer> out = new ArrayList<>();
        try (Connection c = ds.getConnection(); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT v FROM t ORDER BY _ROWID_")) {
            while (rs.next()) {
                out.add(rs.getInt(1));
            }
        }
        return out;
    }
}
