package org.hospitalhub.federation.study;

import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;

import com.fasterxml.jackson.databind.JsonNode;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.federation.StepContext;
import org.hospitalhub.federation.StepExecutor;

/**
 * This node's {@link StepExecutor}: {@link StudySteps} on the hub's database and the clinical schema
 * {@code hub.federation.cdm-schema}, if federation is on ({@code hub.federation.enabled}) and the hub runs on
 * PostgreSQL.
 */
@ApplicationScoped
public class StudyExecutor implements StepExecutor {

    private final Database db;
    private final boolean enabled;
    private final StudySteps steps;

    public StudyExecutor(Database db, @ConfigProperty(name = "hub.federation.enabled", defaultValue = "false") boolean enabled,
            @ConfigProperty(name = "hub.federation.cdm-schema", defaultValue = "cdm") String cdmSchema,
            @ConfigProperty(name = "hub.federation.min-cell-count", defaultValue = "5") int minCell,
            @ConfigProperty(name = "hub.federation.pseudonym-key") Optional<String> pseudonymKey,
            @ConfigProperty(name = "hub.federation.rows.max-date-shift-days", defaultValue = "180") int maxDateShift,
            @ConfigProperty(name = "hub.federation.rows.age-band-years", defaultValue = "5") int ageBand) {
        this.db = db;
        this.enabled = enabled;
        this.steps = new StudySteps(db.dataSource(), cdmSchema, minCell, pseudonymKey, maxDateShift, ageBand);
    }

    @Override
    public JsonNode execute(StepContext step) throws Exception {
        check();
        return steps.execute(step);
    }

    @Override
    public void clean(String projectId, String stepId) throws Exception {
        check();
        steps.clean(projectId, stepId);
    }

    private void check() {
        if (!enabled) {
            throw new IllegalStateException("federation is off on this node: set hub.federation.enabled=true (PostgreSQL only)");
        }
        if (!db.isPostgres()) {
            throw new IllegalStateException("federated studies need the hub on PostgreSQL (profile postgres), not the embedded H2");
        }
    }
}
