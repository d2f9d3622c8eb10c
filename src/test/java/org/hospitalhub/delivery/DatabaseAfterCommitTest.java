package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;
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

/** {@link Database#afterCommit}: the wake-ups of the federation sender and step runner rely on it. */
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
}
