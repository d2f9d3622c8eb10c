package org.hospitalhub.qc;

import java.sql.SQLException;
import java.util.List;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventStore;
import org.hospitalhub.delivery.InvalidEventException;
import org.hospitalhub.ops.ApiKeyFilter;
import org.hospitalhub.ops.Callers;
import org.jboss.logging.Logger;

/**
 * Ingest of clinical events in XML ({@link ClinicalXml}, {@code xsd/qc-clinical-events.xsd}) for the HIS/EMR interfaces
 * that speak XML. An ingest like {@code POST /api/v1/events}: a source key may send events of its own source only;
 * all of the document is stored (hub_event + outbox rows, one transaction) or none of it, and 202 comes only once it
 * is stored; a messageId already stored is listed under {@code duplicates} and stored once. The qc flow then delivers
 * the events to the task engine. Bad documents get 400 naming the element and the rule.
 */
@Path("/api/v1/events/clinical")
public class ClinicalXmlResource {

    private static final Logger LOG = Logger.getLogger(ClinicalXmlResource.class);

    private final ClinicalXml xml;
    private final EventStore store;

    public ClinicalXmlResource(ClinicalXml xml, EventStore store) {
        this.xml = xml;
        this.store = store;
    }

    public record Accepted(List<String> accepted, List<String> duplicates) {
    }

    @POST
    @Consumes({ MediaType.APPLICATION_XML, MediaType.TEXT_XML })
    @Produces(MediaType.APPLICATION_JSON)
    public Response post(String body, @Context ContainerRequestContext ctx) throws SQLException {
        Callers.Caller caller = (Callers.Caller) ctx.getProperty(ApiKeyFilter.CALLER);
        List<Event> events;
        try {
            events = xml.read(body);
        } catch (InvalidEventException e) {
            int status = e.kind() == InvalidEventException.Kind.UNKNOWN_TYPE ? 422 : 400;
            return ApiKeyFilter.ErrorBody.response(status, e.getMessage(), e.field(), e.rule());
        }
        if (caller.role() != Callers.Role.OPERATOR) {
            for (Event e : events) {
                if (!caller.name().equals(e.source())) {
                    return ApiKeyFilter.ErrorBody.response(403, "/clinicalEvents/@source: caller " + caller.name()
                            + " may only send events with source " + caller.name() + ", got " + e.source(),
                            "/clinicalEvents/@source", "source-is-caller");
                }
            }
        }
        EventStore.Stored stored = store.store(events, "http-xml");
        LOG.debugf("Accepted %d clinical XML events (%d duplicates) from %s", events.size(), stored.duplicates().size(),
                caller.name());
        return Response.accepted(new Accepted(stored.accepted(), stored.duplicates())).build();
    }
}
