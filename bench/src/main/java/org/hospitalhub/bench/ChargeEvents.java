package org.hospitalhub.bench;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.SplittableRandom;

/**
 * Generates canonical his.charge.created events valid against src/main/resources/schemas/his.charge.created.json,
 * about 500 bytes each (2 to 4 charge items), keyed by patient (spread over {@code patients} patients so the
 * records spread over the partitions and keep per-patient order). Deterministic: event i is the same in every run.
 */
final class ChargeEvents {

    private static final String[] DEPARTMENTS = {"CARDIOLOGY", "ICU", "EMERGENCY", "ONCOLOGY", "PEDIATRICS",
        "ORTHOPEDICS", "NEUROLOGY", "OUTPATIENT"};
    private static final String[][] ITEMS = {
        {"DRUG-004512", "Amoxicillin 500mg capsule"}, {"DRUG-001877", "Metformin 850mg tablet"},
        {"LAB-000231", "Complete blood count"}, {"LAB-000412", "Liver function panel"},
        {"IMG-000032", "Chest X-ray, two views"}, {"SVC-000017", "Outpatient consultation"},
        {"SVC-000120", "Inpatient bed day, general ward"}, {"PROC-00781", "Intravenous infusion, per bag"}};
    private static final DateTimeFormatter TIME = DateTimeFormatter.ISO_OFFSET_DATE_TIME;
    private static final ZoneOffset CHINA = ZoneOffset.ofHours(8);
    private static final Instant BASE = Instant.parse("2026-11-22T00:00:00Z");

    private final int patients;

    ChargeEvents(int patients) {
        this.patients = patients;
    }

    /** The patient (record key) of event number i. */
    String patient(long i) {
        long p = Math.floorMod(i * 2654435761L, patients);
        return "P" + pad(p, 6);
    }

    /** Event number i of the load data set, eventId chg-&lt;i&gt;, occurredAt a fixed time in the past. */
    String load(long i) {
        return json("chg-" + pad(i, 8), i, BASE.plusMillis(i));
    }

    /** Event number i of the steady-rate phase, eventId steady-&lt;i&gt;, occurredAt = now. */
    String steady(long i) {
        return json("steady-" + pad(i, 8), i, Instant.now());
    }

    private String json(String eventId, long i, Instant occurredAt) {
        SplittableRandom r = new SplittableRandom(i * 31 + 7);
        String patient = patient(i);
        int items = 2 + r.nextInt(2);
        StringBuilder list = new StringBuilder(320);
        long cents = 0;
        for (int k = 0; k < items; k++) {
            String[] item = ITEMS[r.nextInt(ITEMS.length)];
            int qty = 1 + r.nextInt(3);
            long price = 500 + r.nextInt(20000);
            cents += qty * price;
            if (k > 0) {
                list.append(',');
            }
            list.append("{\"code\":\"").append(item[0]).append("\",\"name\":\"").append(item[1])
                    .append("\",\"quantity\":").append(qty).append(",\"unitPrice\":").append(money(price)).append('}');
        }
        return "{\"eventId\":\"" + eventId + "\",\"type\":\"his.charge.created\",\"source\":\"his\",\"hospital\":\"H"
                + pad(Math.floorMod(i, 5) + 1, 2) + "\",\"key\":\"" + patient
                + "\",\"occurredAt\":\"" + TIME.format(occurredAt.atOffset(CHINA)) + "\",\"payload\":{\"chargeId\":\"C"
                + pad(i, 10) + "\",\"patientId\":\"" + patient + "\",\"visitId\":\"V" + patient.substring(1)
                + pad(r.nextInt(10000), 4) + "\",\"department\":\"" + DEPARTMENTS[r.nextInt(DEPARTMENTS.length)]
                + "\",\"amount\":" + money(cents) + ",\"currency\":\"CNY\",\"items\":[" + list + "]}}";
    }

    private static String money(long cents) {
        return cents / 100 + "." + (cents % 100 < 10 ? "0" : "") + cents % 100;
    }

    private static String pad(long v, int width) {
        String s = Long.toString(v);
        return s.length() >= width ? s : "0".repeat(width - s.length()) + s;
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** The eventId of an event this class generated (it is always the first field). */
    static String eventIdOf(String json) {
        int start = json.indexOf("\"eventId\":\"") + 11;
        return json.substring(start, json.indexOf('"', start));
    }
}
