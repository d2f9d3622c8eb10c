package org.hospitalhub.qc;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZonedDateTime;
import java.time.temporal.IsoFields;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.dataformat.csv.CsvMapper;
import com.fasterxml.jackson.dataformat.csv.CsvSchema;

/**
 * Time-limit statistics over the tasks due in a window (cancelled tasks left out), grouped by department, doctor,
 * document type or period (day, ISO week or month of the due time, in {@code hub.qc.zone}): tasks, completed on
 * time, completed late, overdue and still open, open (not yet due), on-time rate = on time / (on time + late +
 * overdue), points deducted = the rules' points of the late and overdue tasks.
 */
@ApplicationScoped
public class QcStatistics {

    public enum GroupBy {
        DEPARTMENT("department"),
        DOCTOR("doctor"),
        DOCUMENT_TYPE("document_type"),
        PERIOD(null);

        final String column;

        GroupBy(String column) {
            this.column = column;
        }
    }

    public enum Period {
        DAY,
        WEEK,
        MONTH
    }

    public record Row(String group, long tasks, long onTime, long late, long overdueOpen, long open, Double onTimeRate,
            double pointsDeducted) {
    }

    public record Report(String groupBy, String period, Instant from, Instant to, String hospital, String zone,
            List<Row> rows, Row total) {
    }

    private final Database db;
    private final ZoneId zone;

    public QcStatistics(Database db, @ConfigProperty(name = "hub.qc.zone", defaultValue = "Asia/Shanghai") String zone) {
        this.db = db;
        this.zone = ZoneId.of(zone);
    }

    private static final class Acc {
        long tasks, onTime, late, overdue, open;
        double points;

        void add(String status, double p) {
            tasks++;
            switch (status) {
                case "COMPLETED_ON_TIME" -> onTime++;
                case "COMPLETED_LATE" -> {
                    late++;
                    points += p;
                }
                case "OVERDUE" -> {
                    overdue++;
                    points += p;
                }
                default -> open++;
            }
        }

        Row row(String group) {
            long decided = onTime + late + overdue;
            Double rate = decided == 0 ? null : Math.round(onTime * 10000.0 / decided) / 10000.0;
            return new Row(group, tasks, onTime, late, overdue, open, rate, Math.round(points * 100) / 100.0);
        }
    }

    public Report compute(GroupBy groupBy, Period period, Instant from, Instant to, String hospital, String department,
            String doctor, String documentType) throws SQLException {
        StringBuilder sql = new StringBuilder("SELECT status, points, due_at, ")
                .append(groupBy.column == null ? "NULL" : groupBy.column)
                .append(" FROM qc_task WHERE status <> 'CANCELLED' AND due_at >= ? AND due_at < ?");
        List<Object> args = new ArrayList<>(List.of(Database.utc(from), Database.utc(to)));
        for (String[] f : new String[][] { { "hospital", hospital }, { "department", department }, { "doctor", doctor },
                { "document_type", documentType } }) {
            if (f[1] != null) {
                sql.append(" AND ").append(f[0]).append(" = ?");
                args.add(f[1]);
            }
        }
        Map<String, Acc> groups = new TreeMap<>();
        Acc total = new Acc();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(sql.toString())) {
            for (int i = 0; i < args.size(); i++) {
                q.setObject(i + 1, args.get(i));
            }
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    String status = rs.getString(1);
                    double points = rs.getDouble(2);
                    String key = groupBy == GroupBy.PERIOD ? bucket(TaskEngine.instant(rs, 3), period)
                            : rs.getString(4) == null ? "(none)" : rs.getString(4);
                    groups.computeIfAbsent(key, k -> new Acc()).add(status, points);
                    total.add(status, points);
                }
            }
        }
        List<Row> rows = groups.entrySet().stream().map(e -> e.getValue().row(e.getKey())).toList();
        return new Report(groupBy == GroupBy.DOCUMENT_TYPE ? "documentType" : groupBy.name().toLowerCase(java.util.Locale.ROOT),
                groupBy == GroupBy.PERIOD ? period.name().toLowerCase() : null, from, to, hospital, zone.getId(), rows,
                total.row("total"));
    }

    private String bucket(Instant due, Period period) {
        ZonedDateTime t = due.atZone(zone);
        return switch (period) {
            case DAY -> t.toLocalDate().toString();
            case WEEK -> String.format("%d-W%02d", t.get(IsoFields.WEEK_BASED_YEAR), t.get(IsoFields.WEEK_OF_WEEK_BASED_YEAR));
            case MONTH -> String.format("%d-%02d", t.getYear(), t.getMonthValue());
        };
    }

    /** The report as CSV: one line per group, then the total; the first column is named after the grouping. */
    public String csv(Report r) {
        CsvSchema schema = CsvSchema.builder().addColumn(r.groupBy()).addColumn("tasks").addColumn("onTime").addColumn("late")
                .addColumn("overdueOpen").addColumn("open").addColumn("onTimeRate").addColumn("pointsDeducted").build()
                .withHeader();
        List<List<Object>> lines = new ArrayList<>();
        List<Row> all = new ArrayList<>(r.rows());
        all.add(r.total());
        for (Row row : all) {
            lines.add(java.util.Arrays.asList(row.group(), row.tasks(), row.onTime(), row.late(), row.overdueOpen(), row.open(),
                    row.onTimeRate() == null ? "" : row.onTimeRate(), row.pointsDeducted()));
        }
        try {
            return new CsvMapper().writer(schema).writeValueAsString(lines);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
