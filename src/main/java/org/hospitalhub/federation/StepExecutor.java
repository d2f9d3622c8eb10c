package org.hospitalhub.federation;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Runs one study step (cohort, variables or analysis) on this node's own clinical data. The network side (inbox,
 * ordering, dependencies, retries) calls it; the data side (definitions, SQL compiler, statistics) implements it.
 * A step's results stay in the node's database, keyed by project and step; what {@link #execute} returns is what the
 * node sends back to the initiator (aggregates with small cells suppressed, or de-identified rows if the project
 * allows them).
 */
public interface StepExecutor {

    /**
     * Executes a step whose dependencies have all succeeded on this node.
     *
     * @throws StepDefinitionException when the definition is invalid or hostile (retrying cannot help)
     * @throws Exception any other failure: the caller cleans the step's partial results and retries
     */
    JsonNode execute(StepContext step) throws Exception;

    /** Removes every partial or complete result of the step on this node, so that it can run again from scratch. */
    void clean(String projectId, String stepId) throws Exception;
}
