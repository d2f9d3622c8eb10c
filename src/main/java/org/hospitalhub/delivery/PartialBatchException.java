package org.hospitalhub.delivery;

import java.util.List;
import java.util.Map;

/**
 * A batch in which some events were applied and others were refused for good (bad data). Only the refused ones go
 * to the dead-letter store, each with its own reason.
 */
public class PartialBatchException extends NonRetryableDeliveryException {

    private final transient Map<Event, String> refused;
    private final transient List<Event> applied;

    public PartialBatchException(Map<Event, String> refused, List<Event> applied) {
        super(refused.size() + " of " + (refused.size() + applied.size()) + " events refused by the receiver: "
                + refused.values().iterator().next());
        this.refused = refused;
        this.applied = applied;
    }

    public Map<Event, String> refused() {
        return refused;
    }

    public List<Event> applied() {
        return applied;
    }
}
