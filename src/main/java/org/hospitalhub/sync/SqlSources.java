package org.hospitalhub.sync;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import javax.sql.DataSource;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.apache.camel.CamelContext;
import org.apache.camel.model.Model;
import org.apache.camel.model.RouteDefinition;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.delivery.FlowRegistry;
import org.hospitalhub.delivery.SchemaRegistry;
import org.jboss.logging.Logger;

import io.quarkus.agroal.DataSource.DataSourceLiteral;
import io.quarkus.arc.Arc;
import io.quarkus.runtime.StartupEvent;

/**
 * The SQL polling sources this hub runs: the routes created from the {@code sql-poll-source} template (the YAML files
 * are the single place a source is declared). All are validated when the application starts, and a bad one (an
 * identifier that is not a plain SQL identifier, a missing parameter, an unknown datasource or event type) stops the
 * start with a message naming the source and the parameter.
 */
@ApplicationScoped
public class SqlSources {

    private static final Logger LOG = Logger.getLogger(SqlSources.class);

    private final CamelContext camel;
    private final Database db;
    private final SchemaRegistry schemas;
    private final FlowRegistry flows;
    private volatile Map<String, SqlSource> sources;

    public SqlSources(CamelContext camel, Database db, SchemaRegistry schemas, FlowRegistry flows) {
        this.camel = camel;
        this.db = db;
        this.schemas = schemas;
        this.flows = flows;
    }

    /** Refuses to start with an invalid source (the pollers themselves never run SQL for one either). */
    void checkAtStartup(@Observes StartupEvent started) {
        Map<String, SqlSource> all = all();
        if (!all.isEmpty()) {
            LOG.infof("SQL polling sources: %s", all.keySet());
        }
    }

    public SqlSource source(String sourceId) {
        SqlSource s = all().get(sourceId);
        if (s == null) {
            throw new IllegalStateException("no sql-poll-source with sourceId '" + sourceId + "'");
        }
        return s;
    }

    public Map<String, SqlSource> all() {
        Map<String, SqlSource> s = sources;
        if (s == null) {
            synchronized (this) {
                if (sources == null) {
                    sources = scan();
                }
                s = sources;
            }
        }
        return s;
    }

    public DataSource dataSource(SqlSource source) {
        if (source.inHubDatabase()) {
            return db.dataSource();
        }
        var handle = Arc.container().select(DataSource.class, new DataSourceLiteral(source.datasource()));
        if (!handle.isResolvable()) {
            throw new IllegalStateException("sql-poll-source " + source.sourceId() + ": no datasource named '"
                    + source.datasource() + "' (configure quarkus.datasource.\"" + source.datasource() + "\".*)");
        }
        return handle.get();
    }

    private Map<String, SqlSource> scan() {
        Model model = camel.getCamelContextExtension().getContextPlugin(Model.class);
        Map<String, SqlSource> found = new LinkedHashMap<>();
        List<String> errors = new ArrayList<>();
        for (RouteDefinition rd : model.getRouteDefinitions()) {
            Map<String, Object> p = rd.getTemplateParameters();
            // A route made from the template carries its parameters, not the template's id: recognise it by them.
            if (p == null || !p.containsKey("sourceId") || !p.containsKey("payloadColumn")) {
                continue;
            }
            Map<String, String> params = new HashMap<>();
            p.forEach((k, v) -> {
                if (v != null) {
                    params.put(k, camel.resolvePropertyPlaceholders(String.valueOf(v)));
                }
            });
            try {
                SqlSource s = SqlSource.from(params);
                check(s);
                SqlSource before = found.putIfAbsent(s.sourceId(), s);
                if (before != null) {
                    errors.add("sql-poll-source " + s.sourceId() + ": sourceId is declared twice (route "
                            + rd.getRouteId() + ")");
                }
            } catch (IllegalArgumentException | IllegalStateException e) {
                errors.add(e.getMessage() + " (route " + rd.getRouteId() + ")");
            }
        }
        if (!errors.isEmpty()) {
            throw new IllegalStateException("Invalid SQL polling source(s): " + String.join(" | ", errors));
        }
        return found;
    }

    /** What the parameters alone cannot tell: the datasource exists, the constant type is known, ids are distinct. */
    private void check(SqlSource s) {
        dataSource(s);
        if (s.type() != null && schemas.schema(s.type()).isEmpty()) {
            throw new IllegalArgumentException("sql-poll-source " + s.sourceId() + ": type '" + s.type()
                    + "' has no schema; known types: " + schemas.types());
        }
        if (flows.flow(s.sourceId()).isPresent()) {
            // Dead letters and metrics are labelled with the sourceId: it must not be mistaken for a delivery flow.
            throw new IllegalArgumentException("sql-poll-source " + s.sourceId()
                    + ": sourceId is also the flowId of a delivery flow; choose another name");
        }
    }
}
