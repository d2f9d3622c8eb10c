package org.hospitalhub.sync;

import java.io.ByteArrayInputStream;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.util.List;

import javax.xml.stream.XMLInputFactory;
import javax.xml.stream.XMLStreamConstants;
import javax.xml.stream.XMLStreamReader;

import jakarta.ws.rs.core.MediaType;

import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.InvalidEventException;
import org.hospitalhub.delivery.XmlEventReader;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * One request to the gateway as the hub reads it: the raw bytes (forwarded unchanged to a legacy endpoint), the
 * events they hold or why they are invalid (the same validation as /api/v1/events), and who is calling (hospital and
 * source system, which pick the gray mode). When the body is invalid the caller is still identified if the fields
 * can be read at all, so a hospital's override also applies to its bad requests.
 */
final class GatewayRequest {

    private static final ObjectMapper LENIENT = new ObjectMapper();

    final byte[] body;
    final MediaType type;
    final List<Event> events;
    final InvalidEventException invalid;
    /** Null when the body does not say. */
    final String hospital;
    /** The events' source system, else the authenticated caller's name. */
    final String source;
    /** The event ids in the body, as far as they can be read (for the reconciliation record). */
    final List<String> eventIds;

    private GatewayRequest(byte[] body, MediaType type, List<Event> events, InvalidEventException invalid,
            String hospital, String source, List<String> eventIds) {
        this.body = body;
        this.type = type;
        this.events = events;
        this.invalid = invalid;
        this.hospital = hospital;
        this.source = source;
        this.eventIds = eventIds;
    }

    static GatewayRequest read(byte[] body, MediaType type, EventParser parser, XmlEventReader xml, String caller) {
        byte[] bytes = body == null ? new byte[0] : body;
        boolean isXml = type != null && type.getSubtype().toLowerCase().endsWith("xml");
        String text = new String(bytes, charset(type));
        try {
            List<Event> events = isXml ? xml.read(text) : parser.parseBody(text);
            Event first = events.get(0);
            return new GatewayRequest(bytes, type, events, null, first.hospital(), first.source(),
                    events.stream().map(Event::eventId).toList());
        } catch (InvalidEventException e) {
            String[] id = isXml ? peekXml(bytes) : peekJson(text);
            return new GatewayRequest(bytes, type, null, e, id[0], id[1] != null ? id[1] : caller,
                    id[2] == null ? List.of() : List.of(id[2]));
        }
    }

    boolean valid() {
        return events != null;
    }

    private static Charset charset(MediaType type) {
        String cs = type == null ? null : type.getParameters().get(MediaType.CHARSET_PARAMETER);
        try {
            return cs == null ? StandardCharsets.UTF_8 : Charset.forName(cs);
        } catch (RuntimeException e) {
            return StandardCharsets.UTF_8;
        }
    }

    /** hospital, source, eventId of the first event of a JSON body that failed validation, where readable. */
    private static String[] peekJson(String text) {
        try {
            JsonNode n = LENIENT.readTree(text);
            if (n != null && n.isArray() && !n.isEmpty()) {
                n = n.get(0);
            }
            if (n != null && n.isObject()) {
                return new String[] { text(n, "hospital", 100), text(n, "source", 100), text(n, "eventId", 200) };
            }
        } catch (Exception e) {
            // unreadable: the caller stays unidentified
        }
        return new String[3];
    }

    private static String text(JsonNode n, String field, int max) {
        JsonNode v = n.get(field);
        return v != null && v.isTextual() && !v.asText().isBlank() && v.asText().length() <= max ? v.asText() : null;
    }

    /** The same for an XML body; DTDs and external entities are off, as in {@link XmlEventReader}. */
    private static String[] peekXml(byte[] bytes) {
        String[] out = new String[3];
        try {
            XMLInputFactory f = XMLInputFactory.newFactory();
            f.setProperty(XMLInputFactory.SUPPORT_DTD, false);
            f.setProperty(XMLInputFactory.IS_SUPPORTING_EXTERNAL_ENTITIES, false);
            XMLStreamReader r = f.createXMLStreamReader(new ByteArrayInputStream(bytes));
            List<String> names = List.of("hospital", "source", "eventId");
            int found = 0;
            while (r.hasNext() && found < 3) {
                if (r.next() != XMLStreamConstants.START_ELEMENT) {
                    continue;
                }
                String name = r.getLocalName();
                if ("payload".equals(name)) {
                    skip(r);
                    continue;
                }
                int i = names.indexOf(name);
                if (i >= 0 && out[i] == null) {
                    String v = r.getElementText().strip();
                    out[i] = v.isEmpty() || v.length() > (i == 2 ? 200 : 100) ? null : v;
                    found++;
                }
            }
            r.close();
        } catch (Exception e) {
            // unreadable XML: whatever was read so far
        }
        return out;
    }

    private static void skip(XMLStreamReader r) throws javax.xml.stream.XMLStreamException {
        int level = 1;
        while (level > 0 && r.hasNext()) {
            int ev = r.next();
            if (ev == XMLStreamConstants.START_ELEMENT) {
                level++;
            } else if (ev == XMLStreamConstants.END_ELEMENT) {
                level--;
            }
        }
    }
}
