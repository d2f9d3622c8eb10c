package org.hospitalhub.sync;

import java.sql.SQLException;
import java.util.List;

import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.Context;
import jakarta.ws.rs.core.HttpHeaders;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.EventStore;
import org.hospitalhub.delivery.InvalidEventException;
import org.hospitalhub.delivery.XmlEventReader;
import org.hospitalhub.ops.ApiKeyFilter;
import org.hospitalhub.ops.Callers;
import org.jboss.logging.Logger;

/**
 * HTTP ingest: one event or an array, JSON or legacy XML. 202 with the accepted ids once durably stored; all of the
 * request is stored or none of it.
 */
@Path("/api/v1/events")
public class EventsResource {

    private static final Logger LOG = Logger.getLogger(EventsResource.class);

    private final EventParser parser;
    private final XmlEventReader xml;
    private final EventStore store;

    public EventsResource(EventParser parser, XmlEventReader xml, EventStore store) {
        this.parser = parser;
        this.xml = xml;
        this.store = store;
    }

    public record Accepted(List<String> accepted, List<String> duplicates) {
    }

    @POST
    @Consumes({ MediaType.APPLICATION_JSON, MediaType.APPLICATION_XML, MediaType.TEXT_XML })
    @Produces(MediaType.APPLICATION_JSON)
    public Response post(String body, @Context HttpHeaders headers, @Context ContainerRequestContext ctx) throws SQLException {
        Callers.Caller caller = (Callers.Caller) ctx.getProperty(ApiKeyFilter.CALLER);
        List<Event> events;
        try {
            MediaType type = headers.getMediaType();
            boolean isXml = type != null && type.getSubtype().toLowerCase().endsWith("xml");
            events = isXml ? xml.read(body) : parser.parseBody(body);
        } catch (InvalidEventException e) {
            return invalid(e);
        }
        if (caller.role() != Callers.Role.OPERATOR) {
            for (int i = 0; i < events.size(); i++) {
                Event e = events.get(i);
                if (!caller.name().equals(e.source())) {
                    String field = events.size() == 1 ? "source" : "[" + i + "].source";
                    return Response.status(Response.Status.FORBIDDEN).type(MediaType.APPLICATION_JSON)
                            .entity(new ApiKeyFilter.ErrorBody(403, field + ": caller " + caller.name()
                                    + " may only send events with source " + caller.name() + ", got " + e.source(),
                                    field, "source-is-caller"))
                            .build();
                }
            }
        }
        EventStore.Stored stored = store.store(events, "http");
        LOG.debugf("Accepted %d events (%d duplicates) from %s", events.size(), stored.duplicates().size(), caller.name());
        return Response.accepted(new Accepted(stored.accepted(), stored.duplicates())).build();
    }

    static Response invalid(InvalidEventException e) {
        int status = e.kind() == InvalidEventException.Kind.UNKNOWN_TYPE ? 422 : 400;
        return Response.status(status).type(MediaType.APPLICATION_JSON)
                .entity(new ApiKeyFilter.ErrorBody(status, e.getMessage(), e.field(), e.rule())).build();
    }
}
