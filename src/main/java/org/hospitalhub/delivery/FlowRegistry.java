package org.hospitalhub.delivery;

import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

import jakarta.enterprise.context.ApplicationScoped;

import org.apache.camel.CamelContext;
import org.apache.camel.model.Model;
import org.apache.camel.model.RouteDefinition;

/**
 * The outbox flows this hub runs, read from the routes created from the {@code outbox-source} template (the YAML
 * files are the single place a flow is declared). Built once the routes are loaded.
 */
@ApplicationScoped
public class FlowRegistry {

    static final String OUTBOX_TEMPLATE = "outbox-source";

    private final CamelContext camel;
    private volatile Map<String, Flow> flows;

    public FlowRegistry(CamelContext camel) {
        this.camel = camel;
    }

    public Collection<Flow> flows() {
        return all().values();
    }

    public Optional<Flow> flow(String id) {
        return Optional.ofNullable(all().get(id));
    }

    /** The flows that must deliver this event. */
    public List<Flow> flowsFor(Event e) {
        return all().values().stream().filter(f -> f.takes(e)).toList();
    }

    private Map<String, Flow> all() {
        Map<String, Flow> f = flows;
        if (f == null) {
            synchronized (this) {
                if (flows == null) {
                    flows = scan();
                }
                f = flows;
            }
        }
        return f;
    }

    private Map<String, Flow> scan() {
        Model model = camel.getCamelContextExtension().getContextPlugin(Model.class);
        Map<String, Flow> found = new LinkedHashMap<>();
        for (RouteDefinition rd : model.getRouteDefinitions()) {
            Map<String, Object> p = rd.getTemplateParameters();
            if (p == null || !p.containsKey("flowId") || !p.containsKey("types")) {
                continue;
            }
            Object template = p.get("templateId");
            if (template != null && !OUTBOX_TEMPLATE.equals(template)) {
                continue;
            }
            String id = String.valueOf(p.get("flowId"));
            Flow flow = new Flow(id, split(p.get("types")), split(p.getOrDefault("hospitals", "*")), rd.getRouteId());
            if (found.putIfAbsent(id, flow) != null) {
                throw new IllegalStateException("flowId '" + id + "' is declared twice (routes " + found.get(id).routeId()
                        + " and " + rd.getRouteId() + ")");
            }
        }
        return found;
    }

    private static Set<String> split(Object v) {
        return Arrays.stream(String.valueOf(v).split(",")).map(String::strip).filter(s -> !s.isEmpty())
                .collect(Collectors.toUnmodifiableSet());
    }
}
