package org.hospitalhub.federation.network;

import jakarta.enterprise.context.ApplicationScoped;

import io.smallrye.mutiny.Multi;
import io.smallrye.mutiny.operators.multi.processors.BroadcastProcessor;

/**
 * Pushes step status changes as they happen on this replica (a status report received, or this node's own execution
 * changing) to the subscribers of the server-sent-event stream. Subscribers that reconnect read the current state
 * through REST first; the stream carries the changes.
 */
@ApplicationScoped
public class StatusFeed {

    private final BroadcastProcessor<Executions.Execution> processor = BroadcastProcessor.create();

    public void publish(Executions.Execution e) {
        processor.onNext(e);
    }

    public Multi<Executions.Execution> project(String projectId) {
        return processor.filter(e -> e.projectId().equals(projectId));
    }
}
