package org.hospitalhub.it;

import java.sql.Connection;
import java.sql.DriverManager;
import java.util.List;

import org.hospitalhub.it.FederationNodes.Node;

/**
 * The clinical side of {@link FederationNetworkIT}: data per node, step definitions, and what the results must be.
 * Needs the data side (the StepExecutor implementation, OMOP CDM schema, synthetic generator, pooling); until it is in
 * the build the IT is skipped with that reason.
 */
final class FederationStudy {

    static final boolean DATA_SIDE = false;
    static final String COHORT = "{}";
    static final String VARIABLES = "{}";
    static final String ANALYSIS = "{}";
    static final String COHORT2 = "{}";
    static final String ANALYSIS2 = "{}";
    static final String COHORT3 = "{}";
    static final String DONE = "SUCCEEDED";

    private FederationStudy() {
    }

    static void load(Node north, Node hub, Node south) throws Exception {
    }

    /** Makes the node's next cohort query fail (a table it reads disappears). */
    static void breakData(Node n) throws Exception {
    }

    static void repairData(Node n) throws Exception {
    }

    /** Holds a lock that makes the node's next cohort query wait until the returned connection commits. */
    static Connection slowDown(Node n) throws Exception {
        Connection c = DriverManager.getConnection(n.db.url, "postgres", "");
        c.setAutoCommit(false);
        return c;
    }

    static void results(Node north, Node hub, Node south, String project, List<String> steps) throws Exception {
    }
}
