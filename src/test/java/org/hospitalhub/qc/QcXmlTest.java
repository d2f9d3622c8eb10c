package org.hospitalhub.qc;

import static io.restassured.RestAssured.given;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.hamcrest.Matchers.hasItems;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.List;
import java.util.UUID;

import jakarta.inject.Inject;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.restassured.response.ValidatableResponse;

/**
 * Clinical events in XML (POST /api/v1/events/clinical, xsd/qc-clinical-events.xsd): valid documents are stored and
 * turned into tasks by the t-qc flow, resent messages stored once; a document the XSD refuses, one with a DOCTYPE (an
 * XXE attempt), or one the JSON Schemas refuse gets 400 naming the element and the rule, and nothing of it is stored.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class QcXmlTest {

    private static final String PATH = "/api/v1/events/clinical";
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ssXXX");

    @Inject
    AdjustableQcClock clock;

    Instant t0;
    String v;

    @BeforeEach
    void fixClock() {
        t0 = Instant.now().plus(Duration.ofDays(30)).truncatedTo(ChronoUnit.SECONDS);
        clock.set(t0);
        v = "xml-" + UUID.randomUUID().toString().substring(0, 8);
    }

    @AfterEach
    void systemClock() {
        clock.useSystem();
    }

    private String at(Duration after) {
        return TIME.format(t0.plus(after).atOffset(ZoneOffset.ofHours(8)));
    }

    private static String doc(String source, String events) {
        return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clinicalEvents xmlns=\"urn:hospitalhub:qc:1\" hospital=\"qc-test\" source=\""
                + source + "\">\n" + events + "</clinicalEvents>\n";
    }

    private String admission(String id, String doctor) {
        return "  <admission messageId=\"" + id + "\" time=\"" + at(Duration.ZERO) + "\">\n"
                + "    <patientId>P-" + v + "</patientId><visitId>" + v + "</visitId><patientName>张三</patientName>\n"
                + "    <department>CARDIO</department>" + (doctor == null ? "" : "<attendingDoctor>" + doctor + "</attendingDoctor>")
                + "<conditionLevel>critical</conditionLevel>\n  </admission>\n";
    }

    private static ValidatableResponse post(String key, String contentType, String body) {
        return given().header("X-Api-Key", key).contentType(contentType).body(body).post(PATH).then();
    }

    private static ValidatableResponse post(String body) {
        return post(QcEvents.SOURCE_KEY, "application/xml; charset=UTF-8", body);
    }

    private long stored() {
        return Events.count("SELECT COUNT(*) FROM hub_event WHERE event_key = ?", v);
    }

    @Test
    void clinicalXmlOpensAndClosesTasksAndAResentMessageIsStoredOnce() {
        String xml = doc("his", admission(v + "-adm", "DR-X")
                // fields of an event in any order
                + "  <documentCompleted messageId=\"" + v + "-doc\" time=\"" + at(Duration.ofHours(5)) + "\">\n"
                + "    <author>DR-X</author><documentId>D1</documentId><visitId>" + v + "</visitId><patientId>P-" + v + "</patientId>"
                + "<documentType>first-progress-note</documentType>\n  </documentCompleted>\n"
                + "  <consultationRequested messageId=\"" + v + "-con\" time=\"" + at(Duration.ofHours(6)) + "\">\n"
                + "    <patientId>P-" + v + "</patientId><visitId>" + v + "</visitId><consultationId>C1</consultationId>"
                + "<urgency>emergency</urgency><department>CARDIO</department><consultedDepartment>ICU</consultedDepartment>\n"
                + "  </consultationRequested>\n");
        post(xml).statusCode(202).body("accepted", equalTo(List.of(v + "-adm", v + "-doc", v + "-con")))
                .body("duplicates", equalTo(List.of()));
        assertEquals(3, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_key = ? AND received_via = 'http-xml'", v));
        String env = Events.strings("SELECT envelope FROM hub_event WHERE event_id = ?", v + "-adm").get(0);
        assertEquals(true, env.contains("\"type\":\"qc.admission\"") && env.contains("\"conditionLevel\":\"critical\"")
                && env.contains("\"patientName\":\"张三\"") && env.contains("\"key\":\"" + v + "\""), env);
        QcEvents.awaitSettled(List.of(v + "-adm", v + "-doc", v + "-con"));
        QcEvents q = new QcEvents("qc-test", v, "P-" + v);
        assertEquals("OPEN", q.status("admission-record", v + "-adm", 0));
        assertEquals("COMPLETED_ON_TIME", q.status("first-progress-note", v + "-adm", 0), "5 h < 8 h");
        assertEquals(t0.plus(Duration.ofDays(1)), q.due("progress-note", "series", 1), "critically ill on admission: daily notes");
        assertEquals(t0.plus(Duration.ofHours(6)).plus(Duration.ofMinutes(10)), q.due("consultation-emergency", "C1", 0));

        // the HIS did not get the answer and sends the document again
        post(xml).statusCode(202).body("duplicates", hasItems(v + "-adm", v + "-doc", v + "-con"));
        assertEquals(3, stored());
        assertEquals(3, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE ? AND flow = 't-qc'", v + "-%"));
    }

    @Test
    void anExternalEntityIsRefusedAndNothingIsRead() {
        String xxe = "<?xml version=\"1.0\"?>\n<!DOCTYPE clinicalEvents [ <!ENTITY secret SYSTEM \"file:///etc/passwd\"> ]>\n"
                + doc("his", admission(v + "-xxe", "&secret;")).substring(doc("his", "").indexOf("<clinicalEvents"));
        post(xxe).statusCode(400).body("rule", equalTo("xml"))
                .body("error", containsString("DOCTYPE declarations (and so external entities) are not allowed"))
                .body("error", org.hamcrest.Matchers.not(containsString("root:")));
        // an internal entity bomb is refused the same way
        String bomb = "<?xml version=\"1.0\"?>\n<!DOCTYPE clinicalEvents [ <!ENTITY a \"aaaaaaaaaa\"> <!ENTITY b \"&a;&a;&a;&a;&a;&a;\"> ]>\n"
                + doc("his", admission(v + "-bomb", "&b;")).substring(doc("his", "").indexOf("<clinicalEvents"));
        post(bomb).statusCode(400).body("rule", equalTo("xml"));
        assertEquals(0, stored());
    }

    @Test
    void aDocumentTheXsdRefusesGets400NamingTheElementAndNothingOfItIsStored() {
        // the second event lacks its attending doctor: the first, valid one is not stored either
        String xml = doc("his", admission(v + "-ok", "DR-X") + admission(v + "-bad", null));
        post(xml).statusCode(400).body("rule", equalTo("xsd")).body("field", equalTo("/clinicalEvents/admission[2]"))
                .body("error", containsString("attendingDoctor"));
        assertEquals(0, stored());

        // a value outside the XSD's enumeration, named with its element
        String level = doc("his", "  <conditionChanged messageId=\"" + v + "-lvl\" time=\"" + at(Duration.ZERO) + "\"><patientId>P1</patientId>"
                + "<visitId>" + v + "</visitId><level>dying</level></conditionChanged>\n");
        post(level).statusCode(400).body("field", equalTo("/clinicalEvents/conditionChanged[1]/level")).body("error", containsString("dying"));

        // an event time without an offset
        String local = doc("his", admission(v + "-tz", "DR-X").replace(at(Duration.ZERO), "2026-12-22T08:00:00"));
        post(local).statusCode(400).body("field", equalTo("/clinicalEvents/admission[1]/@time"))
                .body("error", containsString("2026-12-22T08:00:00"));
        // an event without its message id
        post(doc("his", admission(v + "-noid", "DR-X").replace("messageId=\"" + v + "-noid\" ", ""))).statusCode(400)
                .body("field", equalTo("/clinicalEvents/admission[1]/@messageId"));

        // an unknown event element, a wrong namespace, malformed XML
        post(doc("his", "  <birth messageId=\"x1\" time=\"" + at(Duration.ZERO) + "\"/>\n")).statusCode(400)
                .body("field", equalTo("/clinicalEvents/birth[1]")).body("error", containsString("birth"));
        post("<clinicalEvents hospital=\"qc-test\" source=\"his\"/>").statusCode(400).body("rule", equalTo("xsd"))
                .body("error", containsString("urn:hospitalhub:qc:1"));
        post(doc("his", admission(v + "-open", "DR-X")).replace("</admission>", "")).statusCode(400).body("rule", equalTo("xml"));
        assertEquals(0, stored());
    }

    @Test
    void whatPassesTheXsdButNotTheEnvelopeCheckIsNamedWithTheEventsPath() {
        // xs:dateTime allows 24:00:00 (end of day); the hub's envelope (ISO-8601 with offset) does not
        String xml = doc("his", admission(v + "-a", "DR-X") + admission(v + "-b", "DR-X").replace(at(Duration.ZERO),
                "2026-12-22T24:00:00+08:00"));
        post(xml).statusCode(400).body("field", equalTo("/clinicalEvents/admission[2]:occurredAt")).body("rule", equalTo("format"))
                .body("error", containsString("24:00:00"));
        assertEquals(0, stored());
    }

    @Test
    void callersAreAuthenticatedAndASourceSendsOnlyItsOwnEvents() {
        String xml = doc("his", admission(v + "-auth", "DR-X"));
        given().contentType("application/xml").body(xml).post(PATH).then().statusCode(401);
        post("test-hrp-key", "application/xml", xml).statusCode(403).body("field", equalTo("/clinicalEvents/@source"))
                .body("rule", equalTo("source-is-caller"));
        post(QcEvents.SOURCE_KEY, "application/json", "{}").statusCode(415);
        assertEquals(0, stored());
        // an operator may send for any source
        post(QcEvents.OPS, "text/xml", xml).statusCode(202);
        assertEquals(1, stored());
    }
}
