package org.hospitalhub.qc;

import java.sql.SQLException;
import java.time.OffsetDateTime;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.EventStore;
import org.hospitalhub.delivery.InvalidEventException;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import ca.uhn.hl7v2.AcknowledgmentCode;
import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.parser.CanonicalModelClassFactory;
import ca.uhn.hl7v2.util.Terser;
import ca.uhn.hl7v2.validation.impl.ValidationContextFactory;

/**
 * HL7 v2 ADT over MLLP ({@code hl7-mllp-ingest} template) into qc clinical events. {@link #accept} parses the message
 * (HAPI, read as v2.5), checks its sender and maps it to events validated like any envelope; {@link #store} stores
 * them (hub_event + outbox rows, one transaction) and only then prepares the AA acknowledgment. What is refused is
 * answered AR/AE with the reason ({@link #refuse}) and dead-lettered by the route with the raw message. Event ids
 * come from the sending facility and the message control id, so a resent message is stored once.
 */
@ApplicationScoped
@Named("hl7AdtIngest")
public class Hl7AdtIngest {

    private static final Logger LOG = Logger.getLogger(Hl7AdtIngest.class);

    /** Exchange properties set by the template. */
    public static final String HOSPITAL = "HubHl7Hospital";
    public static final String SOURCE = "HubHl7Source";
    public static final String ALLOWED_FACILITIES = "HubHl7AllowedFacilities";
    public static final String ALLOWED_ADDRESSES = "HubHl7AllowedAddresses";
    public static final String TIME_ZONE = "HubHl7TimeZone";
    /** camel-mllp: the acknowledgment the consumer writes back (autoAck=false). */
    static final String ACK = "CamelMllpAcknowledgementString";
    static final String REMOTE_ADDRESS = "CamelMllpRemoteAddress";
    private static final String EVENTS = "HubHl7Events";
    /** Why a message accepted (AA) makes no event, for MSA-3. */
    private static final String NO_EVENT = "HubHl7NoEvent";
    private static final String PARSED = "HubHl7Message";

    /** Supported trigger events (MSH-9.2 of an ADT message). */
    static final Set<String> TRIGGERS = Set.of("A01", "A02", "A03", "A08", "A11", "A12", "A13");
    private static final Pattern TS = Pattern.compile(
            "(\\d{4})(\\d{2})(\\d{2})(\\d{2})(\\d{2})(\\d{2})?(?:\\.(\\d{1,4}))?([+-]\\d{4})?");
    private static final Pattern UNSAFE = Pattern.compile("[^A-Za-z0-9._-]");
    /** PV2-40 (admission level of care) values read as the qc condition level. */
    static final Map<String, String> LEVELS = Map.ofEntries(
            Map.entry("critical", "critical"), Map.entry("cr", "critical"), Map.entry("病危", "critical"),
            Map.entry("serious", "serious"), Map.entry("se", "serious"), Map.entry("病重", "serious"),
            Map.entry("stable", "stable"), Map.entry("st", "stable"), Map.entry("一般", "stable"));

    private final EventParser parser;
    private final EventStore store;
    private final ObjectMapper json = new ObjectMapper();
    private final HapiContext hapi;

    public Hl7AdtIngest(EventParser parser, EventStore store) {
        this.parser = parser;
        this.store = store;
        // Every version read as 2.5 (the structures on the classpath); HAPI's own field validation off: the events'
        // JSON Schemas decide what is valid, with one error naming the field.
        this.hapi = new DefaultHapiContext(new CanonicalModelClassFactory("2.5"));
        this.hapi.setValidationContext(ValidationContextFactory.noValidation());
        // HAPI's default id generator keeps a counter in a file (id_file) in the working directory; the ACKs' MSH-10 is
        // set to a random id instead (see ack), so nothing is written to disk.
        this.hapi.getParserConfiguration().setIdGenerator(new ca.uhn.hl7v2.util.idgenerator.InMemoryIDGenerator());
    }

    /** Parses, authorizes and maps the message in the body; the events wait in an exchange property for {@link #store}. */
    public void accept(Exchange exchange) {
        String raw = normalize(exchange.getMessage().getBody(String.class));
        if (raw.isBlank()) {
            throw Hl7Rejection.rejected("empty message");
        }
        if (!raw.startsWith("MSH")) {
            throw Hl7Rejection.rejected("not an HL7 v2 message: it must start with an MSH segment");
        }
        String[] msh = raw.substring(0, raw.indexOf('\r') < 0 ? raw.length() : raw.indexOf('\r')).split("\\|", -1);
        String facility = msh.length > 3 ? component(msh[3]) : "";
        String controlId = msh.length > 9 ? msh[9].strip() : "";
        if (controlId.length() > 0) {
            exchange.getMessage().setHeader("HubEventId", eventId(facility, controlId, ""));
        }
        authorize(exchange, facility);

        Message message;
        try {
            message = hapi.getPipeParser().parse(raw);
        } catch (HL7Exception e) {
            throw Hl7Rejection.rejected("unparsable HL7 message: " + e.getMessage());
        }
        exchange.setProperty(PARSED, message);
        Terser t = new Terser(message);
        String type = get(t, "/MSH-9-1");
        String trigger = get(t, "/MSH-9-2");
        if (!"ADT".equals(type) || !TRIGGERS.contains(trigger)) {
            throw Hl7Rejection.rejected("unsupported message " + type + "^" + trigger + " (MSH-9); this listener takes ADT^"
                    + String.join(", ADT^", TRIGGERS.stream().sorted().toList()));
        }
        if (controlId.isEmpty()) {
            throw Hl7Rejection.error("MSH-10 (message control id) is required: it makes the event id of a resent message stable");
        }
        if (facility.isEmpty()) {
            throw Hl7Rejection.error("MSH-4 (sending facility) is required");
        }
        Set<String> segments = Arrays.stream(raw.split("\r")).filter(s -> s.length() >= 3).map(s -> s.substring(0, 3))
                .collect(Collectors.toSet());
        for (String required : List.of("PID", "PV1")) {
            if (!segments.contains(required)) {
                throw Hl7Rejection.error("required segment " + required + " is missing from ADT^" + trigger);
            }
        }
        exchange.setProperty(EVENTS, map(exchange, t, trigger, facility, controlId));
    }

    private void authorize(Exchange exchange, String facility) {
        String listener = exchange.getProperty("HubFlow", String.class);
        Set<String> facilities = list(exchange.getProperty(ALLOWED_FACILITIES, "", String.class));
        if (!facilities.contains("*") && !facilities.contains(facility)) {
            throw Hl7Rejection.rejected("sending facility '" + facility + "' (MSH-4) may not send to HL7 listener " + listener);
        }
        Set<String> addresses = list(exchange.getProperty(ALLOWED_ADDRESSES, "*", String.class));
        if (!addresses.contains("*")) {
            String from = host(exchange.getMessage().getHeader(REMOTE_ADDRESS, String.class));
            if (!addresses.contains(from)) {
                throw Hl7Rejection.rejected("address " + from + " may not send to HL7 listener " + listener);
            }
        }
    }

    private List<Event> map(Exchange exchange, Terser t, String trigger, String facility, String controlId) {
        String hospital = exchange.getProperty(HOSPITAL, String.class);
        String source = exchange.getProperty(SOURCE, String.class);
        ZoneId zone = ZoneId.of(exchange.getProperty(TIME_ZONE, "Asia/Shanghai", String.class));
        String at = time(t, zone);
        String patient = get(t, "/.PID-3-1");
        String visit = get(t, "/.PV1-19-1");
        String name = (get(t, "/.PID-5-1") + " " + get(t, "/.PID-5-2")).strip();
        String location = get(t, "/.PV1-3-1");
        String prior = get(t, "/.PV1-6-1");
        String doctor = get(t, "/.PV1-7-1");
        String levelText = get(t, "/.PV2-40-1");
        String level = null;
        if (!levelText.isEmpty()) {
            level = LEVELS.get(levelText.toLowerCase(Locale.ROOT));
            if (level == null) {
                throw Hl7Rejection.error("PV2-40 (condition level) '" + levelText + "' is not one of critical/CR/病危, "
                        + "serious/SE/病重, stable/ST/一般");
            }
        }
        List<ObjectNode> out = new ArrayList<>();
        switch (trigger) {
            case "A01" -> out.add(event(ClinicalEvent.ADMISSION, "", "department", location, "attendingDoctor", doctor,
                    "conditionLevel", level));
            case "A02" -> {
                if (!location.isEmpty() && location.equals(prior)) { // a bed or room change: no department transfer
                    exchange.setProperty(NO_EVENT, "bed change within " + location + ": no department transfer (PV1-3 = PV1-6)");
                    break;
                }
                // No transfer id in ADT: the move (prior > new location), which an A12 names again, and a tag of this
                // message, so that the same move made twice in a visit is two transfers (each with its note)
                // (a move missing one side stays "<from>>" or "><to>", which putText leaves out: AE naming PV1-6 and PV1-3)
                String transfer = prior + ">" + location
                        + (prior.isEmpty() || location.isEmpty() ? "" : "/" + transferTag(facility, controlId));
                out.add(event(ClinicalEvent.TRANSFER_OUT, "-out", "department", prior, "toDepartment", location,
                        "transferId", transfer));
                out.add(event(ClinicalEvent.TRANSFER_IN, "-in", "department", location, "fromDepartment", prior,
                        "attendingDoctor", doctor, "transferId", transfer));
            }
            case "A03" -> out.add(event(ClinicalEvent.DISCHARGE, "", "department", location, "attendingDoctor", doctor));
            case "A08" -> {
                if (level != null) {
                    out.add(event(ClinicalEvent.CONDITION_CHANGED, "", "level", level, "department", location,
                            "attendingDoctor", doctor));
                }
            }
            case "A11" -> out.add(event(ClinicalEvent.ADMISSION_CANCELLED, "", "department", location,
                    "attendingDoctor", doctor));
            // A12: PV1-3 holds the location before the transfer, PV1-6 the location being cancelled
            case "A12" -> {
                if (!location.isEmpty() && location.equals(prior)) { // cancels a bed change, which made no event
                    exchange.setProperty(NO_EVENT, "cancels a bed change within " + location + ": no event (PV1-3 = PV1-6)");
                    break;
                }
                out.add(event(ClinicalEvent.TRANSFER_CANCELLED, "", "transferId", location + ">" + prior, "department", prior));
            }
            case "A13" -> out.add(event(ClinicalEvent.DISCHARGE_CANCELLED, "", "department", location,
                    "attendingDoctor", doctor));
            default -> throw new IllegalStateException(trigger);
        }
        List<Event> events = new ArrayList<>(out.size());
        for (ObjectNode e : out) {
            String suffix = e.remove("suffix").asText();
            e.put("eventId", eventId(facility, controlId, suffix));
            e.put("source", source);
            e.put("hospital", hospital);
            if (!visit.isEmpty()) {
                e.put("key", visit);
            }
            e.put("occurredAt", at);
            ObjectNode p = (ObjectNode) e.get("payload");
            putText(p, "patientId", patient);
            putText(p, "visitId", visit);
            putText(p, "patientName", name);
            try {
                events.add(parser.validate(e));
            } catch (InvalidEventException ex) {
                throw Hl7Rejection.error(hl7Field(ex.getMessage()));
            }
        }
        return events;
    }

    /** An event skeleton: type, id suffix and payload fields (name, value pairs; empty values left out). */
    private ObjectNode event(String type, String suffix, String... fields) {
        ObjectNode e = json.createObjectNode();
        e.put("suffix", suffix);
        e.put("type", type);
        ObjectNode p = e.putObject("payload");
        for (int i = 0; i < fields.length; i += 2) {
            putText(p, fields[i], fields[i + 1]);
        }
        return e;
    }

    private static void putText(ObjectNode p, String field, String value) {
        if (value != null && !value.isEmpty() && !value.startsWith(">") && !value.endsWith(">")) {
            p.put(field, value);
        }
    }

    /** The schema's field name followed by the HL7 field it comes from. */
    private static String hl7Field(String message) {
        Map<String, String> from = Map.of("patientId", "PID-3", "visitId", "PV1-19", "department", "PV1-3 (A02: PV1-6 too)",
                "toDepartment", "PV1-3", "fromDepartment", "PV1-6", "attendingDoctor", "PV1-7", "transferId",
                "PV1-6 and PV1-3", "patientName", "PID-5", "occurredAt", "EVN-6/EVN-2/MSH-7");
        for (var e : from.entrySet()) {
            if (message.contains("payload." + e.getKey() + ":") || message.startsWith(e.getKey() + " ")) {
                return message + " [HL7 " + e.getValue() + "]";
            }
        }
        return message;
    }

    /** Stores the mapped events (duplicates once) and prepares the AA acknowledgment. */
    @SuppressWarnings("unchecked")
    public void store(Exchange exchange) throws SQLException, HL7Exception, java.io.IOException {
        List<Event> events = exchange.getProperty(EVENTS, List.class);
        String note = null;
        if (events.isEmpty()) {
            note = exchange.getProperty(NO_EVENT, "no condition level in PV2-40: nothing for time-limit quality control",
                    String.class);
        } else {
            EventStore.Stored stored = store.store(events, "hl7");
            LOG.debugf("HL7 listener %s stored %s (%d duplicates)", exchange.getProperty("HubFlow"),
                    events.stream().map(Event::eventId).toList(), stored.duplicates().size());
        }
        exchange.setProperty(ACK, ack(exchange, AcknowledgmentCode.AA, note));
    }

    /** Prepares the AR/AE acknowledgment for a refused message (the route dead-letters it afterwards). */
    public void refuse(Exchange exchange) throws HL7Exception, java.io.IOException {
        Throwable t = exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Throwable.class);
        String code = t instanceof Hl7Rejection r ? r.code() : "AE";
        String reason = t == null ? "refused" : String.valueOf(t.getMessage());
        LOG.warnf("HL7 listener %s refused message %s: %s %s", exchange.getProperty("HubFlow"),
                exchange.getMessage().getHeader("HubEventId"), code, reason);
        exchange.setProperty(ACK, ack(exchange, AcknowledgmentCode.valueOf(code), reason));
    }

    /** The store failed (database unavailable): AE, nothing stored, the sender must send the message again. */
    public void unavailable(Exchange exchange) throws HL7Exception, java.io.IOException {
        Throwable t = exchange.getProperty(Exchange.EXCEPTION_CAUGHT, Throwable.class);
        LOG.errorf("HL7 listener %s could not store message %s: %s", exchange.getProperty("HubFlow"),
                exchange.getMessage().getHeader("HubEventId"), t == null ? "?" : t.getClass().getName());
        exchange.setProperty(ACK, ack(exchange, AcknowledgmentCode.AE,
                "the hub could not store the message (database unavailable); nothing was stored: send it again"));
    }

    private String ack(Exchange exchange, AcknowledgmentCode code, String text) throws HL7Exception, java.io.IOException {
        Message parsed = exchange.getProperty(PARSED, Message.class);
        String reason = text == null ? null : text.length() > 200 ? text.substring(0, 200) : text;
        if (parsed == null) {
            return fallbackAck(exchange, code.name(), reason == null ? null : reason.replaceAll("[\\r\\n|^~\\\\&]", " "));
        }
        Message ack = parsed.generateACK(code, code == AcknowledgmentCode.AA ? null
                : new HL7Exception(reason, code == AcknowledgmentCode.AR ? ca.uhn.hl7v2.ErrorCode.UNSUPPORTED_MESSAGE_TYPE
                        : ca.uhn.hl7v2.ErrorCode.APPLICATION_INTERNAL_ERROR));
        Terser t = new Terser(ack);
        t.set("/MSH-3-1", "HOSPITALHUB");
        t.set("/MSH-10", "HUB" + java.util.UUID.randomUUID().toString().replace("-", "").substring(0, 17));
        if (reason != null) {
            t.set("/MSA-3", reason);
        }
        return hapi.getPipeParser().encode(ack);
    }

    /** An acknowledgment for bytes HAPI could not read: MSH and MSA only, the control id when it could be found. */
    private static String fallbackAck(Exchange exchange, String code, String reason) {
        String raw = normalize(exchange.getMessage().getBody(String.class));
        String controlId = "";
        if (raw.startsWith("MSH|")) {
            String[] msh = raw.split("\r", 2)[0].split("\\|", -1);
            controlId = msh.length > 9 ? msh[9].replaceAll("[^A-Za-z0-9._-]", "") : "";
        }
        String now = OffsetDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyyMMddHHmmssZ"));
        String r = reason == null ? "" : reason;
        return "MSH|^~\\&|HOSPITALHUB|" + exchange.getProperty(HOSPITAL, "", String.class) + "|||" + now + "||ACK|"
                + "HUB" + java.util.UUID.randomUUID().toString().replace("-", "").substring(0, 17) + "|P|2.5\rMSA|" + code + "|" + controlId + "|" + r + "\r";
    }

    /** EVN-6 (event occurred), else EVN-2 (recorded), else MSH-7; in the listener's time zone unless it has an offset. */
    private static String time(Terser t, ZoneId zone) {
        String field = "EVN-6";
        String v = get(t, "/.EVN-6-1");
        if (v.isEmpty()) {
            field = "EVN-2";
            v = get(t, "/.EVN-2-1");
        }
        if (v.isEmpty()) {
            field = "MSH-7";
            v = get(t, "/MSH-7-1");
        }
        Matcher m = TS.matcher(v);
        if (!m.matches()) {
            throw Hl7Rejection.error(field + " (event time) '" + v + "' is not a date-time YYYYMMDDHHMM[SS[.S]][+/-ZZZZ]");
        }
        try {
            int nanos = m.group(7) == null ? 0 : Integer.parseInt((m.group(7) + "000000000").substring(0, 9));
            var local = java.time.LocalDateTime.of(Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)),
                    Integer.parseInt(m.group(3)), Integer.parseInt(m.group(4)), Integer.parseInt(m.group(5)),
                    m.group(6) == null ? 0 : Integer.parseInt(m.group(6)), nanos);
            OffsetDateTime at = m.group(8) == null ? local.atZone(zone).toOffsetDateTime()
                    : local.atOffset(ZoneOffset.of(m.group(8).substring(0, 3) + ":" + m.group(8).substring(3)));
            return at.toString();
        } catch (java.time.DateTimeException e) {
            throw Hl7Rejection.error(field + " (event time) '" + v + "' is not a valid date-time: " + e.getMessage());
        }
    }

    /**
     * Eight base-36 characters naming an A02 (from its facility and control id, so a resent message gives the same):
     * the part after the "/" of its transferId, which stays within its 140 characters for department codes of 64.
     */
    static String transferTag(String facility, String controlId) {
        byte[] h = org.hospitalhub.ops.Callers.sha256(facility + "|" + controlId);
        long v = 0;
        for (int i = 0; i < 5; i++) { // 40 bits: at most 8 base-36 digits
            v = (v << 8) | (h[i] & 0xff);
        }
        String tag = Long.toString(v, 36);
        return "0".repeat(8 - tag.length()) + tag;
    }

    /** Event id from the sending facility and the message control id (+ a suffix when one message makes two events). */
    static String eventId(String facility, String controlId, String suffix) {
        String id = "hl7-" + UNSAFE.matcher(facility).replaceAll("_") + "-" + UNSAFE.matcher(controlId).replaceAll("_") + suffix;
        return id.length() > 200 ? id.substring(0, 200) : id;
    }

    private static String get(Terser t, String path) {
        try {
            String v = t.get(path);
            return v == null ? "" : v.strip();
        } catch (HL7Exception | RuntimeException e) {
            return "";
        }
    }

    private static String component(String field) {
        int hat = field.indexOf('^');
        return (hat < 0 ? field : field.substring(0, hat)).strip();
    }

    private static Set<String> list(String text) {
        return Arrays.stream(text.split(",")).map(String::strip).filter(s -> !s.isEmpty())
                .collect(Collectors.toCollection(LinkedHashSet::new));
    }

    /** "/10.0.0.5:51234" or "host/10.0.0.5:51234" -> "10.0.0.5". */
    static String host(String remote) {
        if (remote == null) {
            return "";
        }
        String s = remote.substring(remote.lastIndexOf('/') + 1);
        int colon = s.lastIndexOf(':');
        s = colon < 0 ? s : s.substring(0, colon);
        return s.startsWith("[") && s.endsWith("]") ? s.substring(1, s.length() - 1) : s;
    }

    private static String normalize(String raw) {
        if (raw == null) {
            return "";
        }
        return raw.replace("\r\n", "\r").replace('\n', '\r').strip();
    }
}
