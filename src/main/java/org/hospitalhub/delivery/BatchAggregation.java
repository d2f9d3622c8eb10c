package org.hospitalhub.delivery;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Produces;
import jakarta.inject.Named;

import org.apache.camel.AggregationStrategy;
import org.apache.camel.processor.aggregate.GroupedBodyAggregationStrategy;

/** Beans the YAML routes refer to by name. */
@ApplicationScoped
public class BatchAggregation {

    /** Collects the bodies (events) of a batch into a List, in arrival order. */
    @Produces
    @Named("batchAggregation")
    AggregationStrategy batchAggregation() {
        return new GroupedBodyAggregationStrategy();
    }
}
