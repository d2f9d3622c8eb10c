package org.hospitalhub.support;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;

/** Test events and database look-ups. */
public final class Events {

    private Events() {
    }

    public static String charge(String eventId, String patient) {
        return """
                {"eventId":"%s","type":"his.charge.created","source":"his","hospital":"test","key":"%s",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"chargeId":"C-%s","patientId":"%s","visitId":"V1","department":"ICU","amount":12.5,
                            "currency":"CNY","items":[{"code":"X1","quantity":1,"unitPrice":12.5}]}}
                """.formatted(eventId, patient, eventId, patient);
    }

    public static String voucher(String eventId) {
        return """
                {"eventId":"%s","type":"finance.voucher.posted","source":"finance","hospital":"test","key":"V",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"voucherId":"%s","period":"2026-11","entries":[{"account":"1001","debit":10,"credit":0},
                            {"account":"6001","debit":0,"credit":10}]}}
                """.formatted(eventId, eventId);
    }

    public static String stockIssued(String eventId) {
        return """
                {"eventId":"%s","type":"hrp.stock.issued","source":"hrp","hospital":"test","key":"M1",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"issueId":"%s","materialId":"M1","warehouse":"W1","department":"ICU","quantity":2,"unit":"box"}}
                """.formatted(eventId, eventId);
    }

    public static long count(String sql, Object... args) {
        try (Connection c = PostgresResource.connect(); PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    public static List<String> strings(String sql, Object... args) {
        try (Connection c = PostgresResource.connect(); PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]);
            }
            List<String> out = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    out.add(rs.getString(1));
                }
            }
            return out;
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }
}
