package org.hospitalhub.qc;

import static io.restassured.RestAssured.given;
import static org.hamcrest.Matchers.hasItem;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import jakarta.inject.Inject;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.app.Connection;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.util.Terser;
import ca.uhn.hl7v2.validation.impl.ValidationContextFactory;
import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * HL7 v2 ADT over MLLP (hl7-flows.camel.yaml, listener t-hl7 of hospital hl7-test): messages sent by HAPI's MLLP
 * client (and a raw socket for bytes HAPI would not send) are answered AA once their qc events are stored, and the
 * task engine (flow t-qc) opens, closes and cancels tasks from them; refused messages are answered AR/AE with the
 * reason and kept in the dead-letter store.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class Hl7MllpTest {

    private static final String H = "hl7-test";
    private static final int PORT = Integer.parseInt(System.getenv().getOrDefault("HUB_TEST_MLLP_PORT", "12575"));
    private static final int GUARDED_PORT = Integer.parseInt(System.getenv().getOrDefault("HUB_TEST_MLLP_GUARDED_PORT", "12576"));
    private static final DateTimeFormatter TS = DateTimeFormatter.ofPattern("yyyyMMddHHmmss").withZone(ZoneOffset.ofHours(8));

    private static HapiContext hapi;

    @Inject
    AdjustableQcClock clock;

    Instant t0;
    String visit;
    String patient;

    @BeforeAll
    static void client() {
        // MSH-18 says UTF-8 (Chinese names and condition terms); HAPI's MLLP client writes the bytes in this charset
        System.setProperty("ca.uhn.hl7v2.llp.charset", "UTF-8");
        hapi = new DefaultHapiContext();
        hapi.setValidationContext(ValidationContextFactory.noValidation());
    }

    @AfterAll
    static void close() throws Exception {
        hapi.close();
    }

    @BeforeEach
    void fixClock() {
        // a month ahead, as in QcTasksTest: no real Quartz deadline fires while the test runs
        t0 = Instant.now().plus(Duration.ofDays(30)).truncatedTo(ChronoUnit.SECONDS);
        clock.set(t0);
        String v = UUID.randomUUID().toString().substring(0, 8);
        visit = "V" + v;
        patient = "P" + v;
    }

    @AfterEach
    void systemClock() {
        clock.useSystem();
    }

    // ---- messages ----------------------------------------------------------------------------------------------------

    private static String ts(Instant at) {
        return TS.format(at);
    }

    /** An ADT message of this test's visit; pv1 and pv2 are the segments' fields after the segment name (or null). */
    private String adt(String facility, String controlId, String trigger, Instant at, String pv1, String pv2) {
        StringBuilder m = new StringBuilder();
        m.append("MSH|^~\\&|HIS|").append(facility).append("|HUB|HOSP|").append(ts(at)).append("||ADT^").append(trigger)
                .append("|").append(controlId).append("|P|2.5||||||UNICODE UTF-8\r");
        m.append("EVN|").append(trigger).append("|").append(ts(at)).append("|||OP1|").append(ts(at)).append("\r");
        m.append("PID|1||").append(patient).append("^^^HIS^MR||张^三||19800101|M\r");
        if (pv1 != null) {
            m.append("PV1|1|I|").append(pv1).append("\r");
        }
        if (pv2 != null) {
            m.append("PV2|").append(pv2).append("\r");
        }
        return m.toString();
    }

    /** PV1 from field 3: location, prior location (PV1-6), attending doctor (PV1-7), visit number (PV1-19). */
    private String pv1(String location, String prior, String doctor) {
        return location + "|||" + (prior == null ? "" : prior) + "|" + doctor + "|".repeat(12) + visit;
    }

    /** PV2 with field 40 (condition level) set. */
    private static String pv2Level(String level) {
        return "|".repeat(39) + level;
    }

    private static String id() {
        return "MSG" + UUID.randomUUID().toString().replace("-", "").substring(0, 12);
    }

    /** Sends through HAPI's MLLP client and returns the acknowledgment's MSA-1 and MSA-3 as "code|text". */
    private static String send(String message, int port) throws Exception {
        Connection c = hapi.newClient("127.0.0.1", port, false);
        try {
            Message ack = c.getInitiator().sendAndReceive(hapi.getPipeParser().parse(message));
            Terser t = new Terser(ack);
            String text = t.get("/MSA-3");
            return t.get("/MSA-1") + "|" + (text == null ? "" : text);
        } finally {
            c.close();
        }
    }

    private static String send(String message) throws Exception {
        return send(message, PORT);
    }

    /** Sends bytes framed by MLLP on a plain socket; returns the acknowledgment's text. */
    private static String sendRaw(byte[] payload) throws Exception {
        try (Socket s = new Socket("127.0.0.1", PORT)) {
            s.setSoTimeout(10_000);
            OutputStream out = s.getOutputStream();
            out.write(0x0b);
            out.write(payload);
            out.write(new byte[] { 0x1c, 0x0d });
            out.flush();
            InputStream in = s.getInputStream();
            ByteArrayOutputStream ack = new ByteArrayOutputStream();
            int b;
            while ((b = in.read()) != -1 && b != 0x1c) {
                if (b != 0x0b) {
                    ack.write(b);
                }
            }
            return ack.toString(StandardCharsets.UTF_8);
        }
    }

    private static String msa(String ack) {
        for (String seg : ack.split("\r")) {
            if (seg.startsWith("MSA|")) {
                return seg;
            }
        }
        throw new AssertionError("no MSA segment in " + ack);
    }

    // ---- assertions --------------------------------------------------------------------------------------------------

    private static String eventId(String facility, String controlId) {
        return "hl7-" + facility + "-" + controlId;
    }

    private static long stored(String eventId) {
        return Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = ?", eventId);
    }

    private String task(String rule) {
        List<String> s = Events.strings("SELECT status FROM qc_task WHERE hospital = ? AND visit_id = ? AND rule_id = ? "
                + "AND period_no = 0", H, visit, rule);
        return s.isEmpty() ? null : s.get(0);
    }

    private Map<String, String> tasks() {
        Map<String, String> m = new java.util.TreeMap<>();
        for (String s : Events.strings("SELECT rule_id || '|' || period_no || '=' || status FROM qc_task WHERE hospital = ? "
                + "AND visit_id = ?", H, visit)) {
            int eq = s.lastIndexOf('=');
            m.put(s.substring(0, eq), s.substring(eq + 1));
        }
        return m;
    }

    /** The open dead letter of this listener holding the text, as "error_class|error_message|payload". */
    private static String deadLetter(String flow, String containing) {
        List<String> r = Events.strings("SELECT error_class || '|' || error_message || '|' || payload FROM dead_letter "
                + "WHERE flow = ? AND status = 'OPEN' AND payload LIKE ?", flow, "%" + containing + "%");
        assertEquals(1, r.size(), "one dead letter of " + flow + " holding " + containing + ": " + r);
        return r.get(0);
    }

    private static void settled(String... ids) {
        QcEvents.awaitSettled(List.of(ids));
    }

    // ---- tests -------------------------------------------------------------------------------------------------------

    @Test
    void admissionIsAcknowledgedAfterItIsStoredAndOpensTheAdmissionTasks() throws Exception {
        String ctl = id();
        String a01 = adt("CITY-HIS", ctl, "A01", t0, pv1("CARDIO", null, "DR-A"), null);
        assertEquals("AA|", send(a01));
        String eid = eventId("CITY-HIS", ctl);
        assertEquals(1, stored(eid), "stored before the AA");
        String env = Events.strings("SELECT envelope FROM hub_event WHERE event_id = ?", eid).get(0);
        assertTrue(env.contains("\"type\":\"qc.admission\"") && env.contains("\"patientId\":\"" + patient + "\"")
                && env.contains("\"visitId\":\"" + visit + "\"") && env.contains("\"department\":\"CARDIO\"")
                && env.contains("\"attendingDoctor\":\"DR-A\"") && env.contains("\"patientName\":\"张 三\"")
                && env.contains("\"key\":\"" + visit + "\"") && env.contains("\"hospital\":\"hl7-test\""), env);
        settled(eid);
        assertEquals("OPEN", task("admission-record"));
        assertEquals(t0.plus(Duration.ofHours(24)).toString(), Instant.ofEpochMilli(Long.parseLong(Events.strings(
                "SELECT CAST(EXTRACT(EPOCH FROM due_at) * 1000 AS BIGINT) FROM qc_task WHERE hospital = ? AND visit_id = ? "
                        + "AND rule_id = 'admission-record'", H, visit).get(0))).toString(),
                "due 24 h after EVN-6 (times without offset read in Asia/Shanghai)");

        // the HIS did not get the ACK and sends the same message again: AA, stored once
        assertEquals("AA|", send(a01));
        assertEquals(1, stored(eid));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id = ?", eid));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_task WHERE hospital = ? AND visit_id = ? AND rule_id = "
                + "'admission-record'", H, visit));
    }

    @Test
    void dischargeAndItsCancellationMoveTheTasks() throws Exception {
        String adm = id();
        String dis = id();
        String undo = id();
        assertEquals("AA|", send(adt("CITY-HIS", adm, "A01", t0, pv1("CARDIO", null, "DR-A"), null)));
        assertEquals("AA|", send(adt("CITY-HIS", dis, "A03", t0.plus(Duration.ofHours(30)), pv1("CARDIO", null, "DR-A"), null)));
        settled(eventId("CITY-HIS", adm), eventId("CITY-HIS", dis));
        assertEquals("OPEN", task("discharge-record"));
        assertEquals("CANCELLED", tasks().get("progress-note|1"), "no progress notes after discharge");

        assertEquals("AA|", send(adt("CITY-HIS", undo, "A13", t0.plus(Duration.ofHours(31)), pv1("CARDIO", null, "DR-A"), null)));
        settled(eventId("CITY-HIS", undo));
        assertEquals("CANCELLED", task("discharge-record"));
        assertEquals("OPEN", tasks().get("progress-note|1"), "reopened by A13");
    }

    @Test
    void cancellingTheAdmissionCancelsItsTasks() throws Exception {
        String adm = id();
        String undo = id();
        assertEquals("AA|", send(adt("CITY-HIS", adm, "A01", t0, pv1("CARDIO", null, "DR-A"), null)));
        assertEquals("AA|", send(adt("CITY-HIS", undo, "A11", t0.plus(Duration.ofHours(1)), pv1("CARDIO", null, "DR-A"), null)));
        settled(eventId("CITY-HIS", adm), eventId("CITY-HIS", undo));
        assertEquals("CANCELLED", task("admission-record"));
        assertEquals("CANCELLED", task("first-progress-note"));
        assertEquals("CANCELLED", Events.strings("SELECT status FROM qc_visit WHERE hospital = ? AND visit_id = ?", H, visit).get(0));
    }

    @Test
    void transferMakesTwoEventsAndA12CancelsTheTransferInNote() throws Exception {
        String adm = id();
        String move = id();
        String undo = id();
        assertEquals("AA|", send(adt("CITY-HIS", adm, "A01", t0, pv1("CARDIO", null, "DR-A"), null)));
        assertEquals("AA|", send(adt("CITY-HIS", move, "A02", t0.plus(Duration.ofHours(2)), pv1("NEURO", "CARDIO", "DR-B"), null)));
        String out = eventId("CITY-HIS", move) + "-out";
        String in = eventId("CITY-HIS", move) + "-in";
        assertEquals(List.of("qc.transfer.in", "qc.transfer.out"), Events.strings("SELECT event_type FROM hub_event WHERE "
                + "event_id IN (?, ?) ORDER BY event_type", out, in));
        assertTrue(Events.strings("SELECT envelope FROM hub_event WHERE event_id = ?", in).get(0)
                .contains("\"transferId\":\"CARDIO>NEURO/" + Hl7AdtIngest.transferTag("CITY-HIS", move) + "\""));
        settled(eventId("CITY-HIS", adm), out, in);
        assertEquals("OPEN", task("transfer-in-note"));

        // A12: PV1-3 = where the patient was before the transfer, PV1-6 = the location being cancelled
        assertEquals("AA|", send(adt("CITY-HIS", undo, "A12", t0.plus(Duration.ofHours(3)), pv1("CARDIO", "NEURO", "DR-A"), null)));
        settled(eventId("CITY-HIS", undo));
        assertEquals("CANCELLED", task("transfer-in-note"));
    }

    @Test
    void theSameMoveTwiceInAVisitIsTwoTransfersAndA12CancelsTheLatest() throws Exception {
        String adm = id();
        String there = id();
        String back = id();
        String again = id();
        String undo = id();
        assertEquals("AA|", send(adt("CITY-HIS", adm, "A01", t0, pv1("CARDIO", null, "DR-A"), null)));
        assertEquals("AA|", send(adt("CITY-HIS", there, "A02", t0.plus(Duration.ofHours(2)), pv1("ICU", "CARDIO", "DR-B"), null)));
        assertEquals("AA|", send(adt("CITY-HIS", back, "A02", t0.plus(Duration.ofHours(4)), pv1("CARDIO", "ICU", "DR-A"), null)));
        assertEquals("AA|", send(adt("CITY-HIS", again, "A02", t0.plus(Duration.ofHours(6)), pv1("ICU", "CARDIO", "DR-C"), null)));
        settled(eventId("CITY-HIS", adm), eventId("CITY-HIS", there) + "-in", eventId("CITY-HIS", back) + "-in",
                eventId("CITY-HIS", again) + "-in");
        String notes = "SELECT opened_by || '=' || status FROM qc_task WHERE hospital = ? AND visit_id = ? "
                + "AND rule_id = 'transfer-in-note' ORDER BY due_at";
        assertEquals(List.of(eventId("CITY-HIS", there) + "-in=OPEN", eventId("CITY-HIS", back) + "-in=OPEN",
                eventId("CITY-HIS", again) + "-in=OPEN"), Events.strings(notes, H, visit), "a note for each move, ICU twice");
        // A12 from ICU back to CARDIO: the latest CARDIO>ICU move only
        assertEquals("AA|", send(adt("CITY-HIS", undo, "A12", t0.plus(Duration.ofHours(7)), pv1("CARDIO", "ICU", "DR-A"), null)));
        settled(eventId("CITY-HIS", undo));
        assertEquals(List.of(eventId("CITY-HIS", there) + "-in=OPEN", eventId("CITY-HIS", back) + "-in=OPEN",
                eventId("CITY-HIS", again) + "-in=CANCELLED"), Events.strings(notes, H, visit));
        assertEquals("CARDIO", Events.strings("SELECT department FROM qc_visit WHERE hospital = ? AND visit_id = ?", H, visit).get(0));
        // a bed change within ICU (an A02 with PV1-3 = PV1-6) is no department transfer: AA, no event, no note; nor its A12
        String bed = id();
        String bedUndo = id();
        assertEquals("AA|bed change within ICU: no department transfer (PV1-3 = PV1-6)",
                send(adt("CITY-HIS", bed, "A02", t0.plus(Duration.ofHours(7).plusMinutes(10)), pv1("ICU", "ICU", "DR-C"), null)));
        assertEquals("AA|cancels a bed change within ICU: no event (PV1-3 = PV1-6)",
                send(adt("CITY-HIS", bedUndo, "A12", t0.plus(Duration.ofHours(7).plusMinutes(20)), pv1("ICU", "ICU", "DR-C"), null)));
        assertEquals(0, stored(eventId("CITY-HIS", bed) + "-in") + stored(eventId("CITY-HIS", bed) + "-out")
                + stored(eventId("CITY-HIS", bedUndo)));
        assertEquals(3, Events.strings(notes, H, visit).size(), "no transfer-in note for a bed change");
        // department codes of the longest length allowed (64) still make a valid transferId (138 characters)
        String far = id();
        assertEquals("AA|", send(adt("CITY-HIS", far, "A02", t0.plus(Duration.ofHours(8)), pv1("X".repeat(64), "CARDIO".repeat(10) + "WARD",
                "DR-A"), null)));
        assertTrue(Events.strings("SELECT envelope FROM hub_event WHERE event_id = ?", eventId("CITY-HIS", far) + "-in").get(0)
                .contains("\"transferId\":\"" + "CARDIO".repeat(10) + "WARD>" + "X".repeat(64) + "/" + Hl7AdtIngest.transferTag("CITY-HIS", far) + "\""));
    }

    @Test
    void a08WithAConditionLevelChangesTheProgressNotePeriod() throws Exception {
        String adm = id();
        String upd = id();
        String plain = id();
        assertEquals("AA|", send(adt("CITY-HIS", adm, "A01", t0, pv1("CARDIO", null, "DR-A"), null)));
        settled(eventId("CITY-HIS", adm));
        String due = "SELECT CAST(EXTRACT(EPOCH FROM due_at) * 1000 AS BIGINT) FROM qc_task WHERE hospital = ? AND visit_id = ? "
                + "AND rule_id = 'progress-note' AND period_no = 1";
        assertEquals(t0.plus(Duration.ofDays(3)).toEpochMilli(), Long.parseLong(Events.strings(due, H, visit).get(0)), "stable");

        assertEquals("AA|", send(adt("CITY-HIS", upd, "A08", t0.plus(Duration.ofHours(10)), pv1("CARDIO", null, "DR-A"),
                pv2Level("病危"))));
        String eid = eventId("CITY-HIS", upd);
        assertTrue(Events.strings("SELECT envelope FROM hub_event WHERE event_id = ?", eid).get(0).contains("\"level\":\"critical\""));
        settled(eid);
        assertEquals(t0.plus(Duration.ofHours(34)).toEpochMilli(), Long.parseLong(Events.strings(due, H, visit).get(0)),
                "critical: within a day of the change");

        // an A08 without a condition level (a demographics update) is accepted and makes no event
        String ack = send(adt("CITY-HIS", plain, "A08", t0.plus(Duration.ofHours(11)), pv1("CARDIO", null, "DR-A"), null));
        assertTrue(ack.startsWith("AA|no condition level in PV2-40"), ack);
        assertEquals(0, stored(eventId("CITY-HIS", plain)));

        // an unknown level is an error in the content
        String bad = id();
        ack = send(adt("CITY-HIS", bad, "A08", t0.plus(Duration.ofHours(12)), pv1("CARDIO", null, "DR-A"), pv2Level("XX")));
        assertTrue(ack.startsWith("AE|PV2-40 (condition level) 'XX'"), ack);
        assertTrue(deadLetter("t-hl7", bad).contains("Hl7Rejection|PV2-40 (condition level) 'XX'"));
    }

    @Test
    void aMissingSegmentIsAnsweredAeAndKeptAsADeadLetter() throws Exception {
        String ctl = id();
        String ack = send(adt("CITY-HIS", ctl, "A01", t0, null, null));
        assertEquals("AE|required segment PV1 is missing from ADT^A01", ack);
        assertEquals(0, stored(eventId("CITY-HIS", ctl)));
        String letter = deadLetter("t-hl7", ctl);
        assertTrue(letter.startsWith("org.hospitalhub.qc.Hl7Rejection|required segment PV1 is missing from ADT^A01|MSH|"), letter);
        // the existing dead-letter API lists it under the listener's id
        given().header("X-Api-Key", QcEvents.OPS).get("/api/v1/dead-letters?flow=t-hl7").then().statusCode(200)
                .body("items.eventId", hasItem(eventId("CITY-HIS", ctl)));
    }

    @Test
    void aSchemaViolationIsAnsweredAeNamingTheField() throws Exception {
        String ctl = id();
        // no attending doctor (PV1-7): qc.admission requires it
        String ack = send(adt("CITY-HIS", ctl, "A01", t0, pv1("CARDIO", null, ""), null));
        assertTrue(ack.startsWith("AE|payload.attendingDoctor"), ack);
        assertEquals(0, stored(eventId("CITY-HIS", ctl)));
        assertTrue(deadLetter("t-hl7", ctl).contains("[HL7 PV1-7]"));
        // an A02 without the prior location (PV1-6), or without the new one (PV1-3): AE naming them, nothing stored
        for (String[] sides : new String[][] { { "ICU", null }, { "", "CARDIO" } }) {
            String move = id();
            ack = send(adt("CITY-HIS", move, "A02", t0.plus(Duration.ofHours(1)), pv1(sides[0], sides[1], "DR-A"), null));
            assertTrue(ack.startsWith("AE|payload.") && ack.contains("[HL7 PV1-"), ack);
            assertEquals(0, stored(eventId("CITY-HIS", move) + "-in"));
            assertEquals(0, stored(eventId("CITY-HIS", move) + "-out"));
        }
    }

    @Test
    void anUnsupportedEventIsRejected() throws Exception {
        String ctl = id();
        String ack = send(adt("CITY-HIS", ctl, "A40", t0, pv1("CARDIO", null, "DR-A"), null));
        assertTrue(ack.startsWith("AR|unsupported message ADT^A40 (MSH-9)"), ack);
        assertTrue(deadLetter("t-hl7", ctl).contains("unsupported message ADT^A40"));
    }

    @Test
    void garbageBytesAreRejectedAndKept() throws Exception {
        String marker = "garbage-" + UUID.randomUUID();
        String msa = msa(sendRaw(("this is not HL7 at all " + marker).getBytes(StandardCharsets.UTF_8)));
        assertTrue(msa.startsWith("MSA|AR||not an HL7 v2 message"), msa);
        assertTrue(deadLetter("t-hl7", marker).contains("not an HL7 v2 message"));

        // an MSH from an allowed facility that HAPI cannot read (no version in MSH-12)
        String ctl = id();
        String broken = "MSH|^~\\&|HIS|CITY-HIS|HUB|HOSP|" + ts(t0) + "||ADT^A01|" + ctl + "|P|\rPID|1||" + marker;
        msa = msa(sendRaw(broken.getBytes(StandardCharsets.UTF_8)));
        assertTrue(msa.startsWith("MSA|AR|" + ctl + "|unparsable HL7 message"), msa);
        assertTrue(deadLetter("t-hl7", ctl).contains("unparsable HL7 message"));

        // the listener still works afterwards
        assertEquals("AA|", send(adt("CITY-HIS", id(), "A01", t0, pv1("CARDIO", null, "DR-A"), null)));
    }

    @Test
    void anotherSendingFacilityOrAddressIsRejected() throws Exception {
        String ctl = id();
        String ack = send(adt("OTHER-HIS", ctl, "A01", t0, pv1("CARDIO", null, "DR-A"), null));
        assertEquals("AR|sending facility 'OTHER-HIS' (MSH-4) may not send to HL7 listener t-hl7", ack);
        assertEquals(0, stored(eventId("OTHER-HIS", ctl)));
        deadLetter("t-hl7", ctl);

        String ctl2 = id();
        ack = send(adt("CITY-HIS", ctl2, "A01", t0, pv1("CARDIO", null, "DR-A"), null), GUARDED_PORT);
        assertEquals("AR|address 127.0.0.1 may not send to HL7 listener t-hl7-guarded", ack);
        assertEquals(0, stored(eventId("CITY-HIS", ctl2)));
        deadLetter("t-hl7-guarded", ctl2);
    }
}
