package org.hospitalhub.qc;

import java.sql.SQLException;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.ExchangeProperty;
import org.hospitalhub.delivery.Event;

/** The qc-sink route template's bean: a delivered batch of clinical events into the task engine. */
@ApplicationScoped
@Named("qcSink")
public class QcSink {

    private final TaskEngine engine;

    public QcSink(TaskEngine engine) {
        this.engine = engine;
    }

    public void apply(@ExchangeProperty("HubFlow") String flow, @ExchangeProperty("HubBatch") List<Event> batch) throws SQLException {
        engine.apply(flow, batch);
    }
}
