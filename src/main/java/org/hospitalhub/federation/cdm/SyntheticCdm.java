package org.hospitalhub.federation.cdm;

import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BiConsumer;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyIn;

/**
 * Fills a node's OMOP CDM schema with synthetic patients, deterministically: the same seed and number of persons give
 * the same rows on every machine. Every person's history derives from a random generator seeded by (seed, person id)
 * alone, so the tables can be written one after the other (one PostgreSQL COPY each) without holding the population in
 * memory. Distributions: ages 0–95 centred on the late forties; type 2 diabetes and hypertension becoming more common
 * with age, with their usual drugs; HbA1c, systolic blood pressure and BMI measured with values depending on the
 * conditions; outpatient and inpatient visits; deaths more likely with age. The vocabulary is small (see
 * {@link #CONCEPTS}) with a hierarchy in concept_ancestor (e.g. diabetes mellitus above type 1 and type 2 diabetes).
 */
public final class SyntheticCdm {

    // vocabulary: concept id, name, domain, vocabulary, class, parent (0 = none)
    public static final int MALE = 8507, FEMALE = 8532;
    public static final int DIABETES = 201820, TYPE2_DIABETES = 201826, TYPE1_DIABETES = 201254;
    public static final int HYPERTENSIVE_DISORDER = 316866, ESSENTIAL_HYPERTENSION = 320128;
    public static final int MYOCARDIAL_INFARCTION = 4329847, COPD = 255573, PHARYNGITIS = 25297;
    public static final int ANTIDIABETICS = 21600712, METFORMIN = 1503297, INSULIN = 1596977;
    public static final int RAS_AGENTS = 21601782, LISINOPRIL = 1308216, AMLODIPINE = 1332418, ACETAMINOPHEN = 1125315;
    public static final int HBA1C = 3004410, SYSTOLIC_BP = 3004249, BMI = 3038553;
    public static final int SURGICAL_PROCEDURE = 4301351, CABG = 4336464, APPENDECTOMY = 4198190;
    public static final int INPATIENT = 9201, OUTPATIENT = 9202;
    public static final int SMOKER = 4298794;
    private static final int EHR = 32817;

    public record Concept(int id, String name, String domain, String vocabulary, String conceptClass, int parent) {
    }

    public static final List<Concept> CONCEPTS = List.of(
            new Concept(MALE, "MALE", "Gender", "Gender", "Gender", 0),
            new Concept(FEMALE, "FEMALE", "Gender", "Gender", "Gender", 0),
            new Concept(DIABETES, "Diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", 0),
            new Concept(TYPE2_DIABETES, "Type 2 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", DIABETES),
            new Concept(TYPE1_DIABETES, "Type 1 diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", DIABETES),
            new Concept(HYPERTENSIVE_DISORDER, "Hypertensive disorder", "Condition", "SNOMED", "Clinical Finding", 0),
            new Concept(ESSENTIAL_HYPERTENSION, "Essential hypertension", "Condition", "SNOMED", "Clinical Finding",
                    HYPERTENSIVE_DISORDER),
            new Concept(MYOCARDIAL_INFARCTION, "Myocardial infarction", "Condition", "SNOMED", "Clinical Finding", 0),
            new Concept(COPD, "Chronic obstructive lung disease", "Condition", "SNOMED", "Clinical Finding", 0),
            new Concept(PHARYNGITIS, "Acute pharyngitis", "Condition", "SNOMED", "Clinical Finding", 0),
            new Concept(ANTIDIABETICS, "Drugs used in diabetes", "Drug", "ATC", "ATC 2nd", 0),
            new Concept(METFORMIN, "metformin", "Drug", "RxNorm", "Ingredient", ANTIDIABETICS),
            new Concept(INSULIN, "insulin, regular, human", "Drug", "RxNorm", "Ingredient", ANTIDIABETICS),
            new Concept(RAS_AGENTS, "Agents acting on the renin-angiotensin system", "Drug", "ATC", "ATC 2nd", 0),
            new Concept(LISINOPRIL, "lisinopril", "Drug", "RxNorm", "Ingredient", RAS_AGENTS),
            new Concept(AMLODIPINE, "amlodipine", "Drug", "RxNorm", "Ingredient", 0),
            new Concept(ACETAMINOPHEN, "acetaminophen", "Drug", "RxNorm", "Ingredient", 0),
            new Concept(HBA1C, "Hemoglobin A1c/Hemoglobin.total in Blood", "Measurement", "LOINC", "Lab Test", 0),
            new Concept(SYSTOLIC_BP, "Systolic blood pressure", "Measurement", "LOINC", "Clinical Observation", 0),
            new Concept(BMI, "Body mass index", "Measurement", "LOINC", "Clinical Observation", 0),
            new Concept(SURGICAL_PROCEDURE, "Surgical procedure", "Procedure", "SNOMED", "Procedure", 0),
            new Concept(CABG, "Coronary artery bypass graft", "Procedure", "SNOMED", "Procedure", SURGICAL_PROCEDURE),
            new Concept(APPENDECTOMY, "Appendectomy", "Procedure", "SNOMED", "Procedure", SURGICAL_PROCEDURE),
            new Concept(INPATIENT, "Inpatient Visit", "Visit", "Visit", "Visit", 0),
            new Concept(OUTPATIENT, "Outpatient Visit", "Visit", "Visit", "Visit", 0),
            new Concept(SMOKER, "Smoker", "Observation", "SNOMED", "Clinical Finding", 0),
            new Concept(EHR, "EHR", "Type Concept", "Type Concept", "Type Concept", 0));

    static final LocalDate END = LocalDate.of(2025, 12, 31);
    private static final long END_DAY = END.toEpochDay();
    private static final long FIRST_DAY = LocalDate.of(2015, 1, 1).toEpochDay();

    /** One person's history, derived from (seed, person id) only. */
    public record Person(int id, int gender, int yearOfBirth, long birthDay, long obsStart, long obsEnd, Long deathDay,
            List<long[]> conditions, List<long[]> drugs, List<double[]> measurements, List<long[]> procedures,
            List<long[]> visits, Long smokerDay) {
    }

    private SyntheticCdm() {
    }

    /** Rows written per table. */
    public record Counts(int persons, long conditions, long drugs, long measurements, long procedures, long visits,
            long observations, long deaths) {
    }

    /**
     * Replaces the contents of the CDM tables in {@code schema} with {@code persons} synthetic persons. The schema must
     * exist (see {@link CdmSchema#migrate}). One transaction: the node sees the old data or the new, never half.
     */
    public static Counts generate(Connection c, String schema, int persons, long seed) throws SQLException {
        return generate(c, schema, 1, persons, seed);
    }

    /**
     * As {@link #generate(Connection, String, int, long)}, with person ids from {@code firstPersonId} (nodes with
     * disjoint ids can be copied into one schema, e.g. to check pooled results against the union).
     */
    public static Counts generate(Connection c, String schema, int firstPersonId, int persons, long seed) throws SQLException {
        if (persons < 1 || persons > 20_000_000) {
            throw new IllegalArgumentException("persons must be between 1 and 20,000,000, got " + persons);
        }
        if (firstPersonId < 1 || (long) firstPersonId + persons > 30_000_000) {
            throw new IllegalArgumentException("person ids must stay between 1 and 30,000,000 (event ids are person id × 64 + n)");
        }
        String s = CdmSchema.checkName(schema);
        boolean auto = c.getAutoCommit();
        c.setAutoCommit(false);
        try {
            try (Statement st = c.createStatement()) {
                st.execute("TRUNCATE " + String.join(", ", List.of("person", "observation_period", "visit_occurrence",
                        "condition_occurrence", "drug_exposure", "procedure_occurrence", "measurement", "observation",
                        "death", "concept", "concept_ancestor").stream().map(t -> s + "." + t).toList()));
            }
            PGConnection pg = c.unwrap(PGConnection.class);
            copy(pg, s, "concept (concept_id, concept_name, domain_id, vocabulary_id, concept_class_id, standard_concept,"
                    + " concept_code, valid_start_date, valid_end_date)", 1, 1, seed, (p, out) -> { }, sb -> {
                        for (Concept k : CONCEPTS) {
                            row(sb, k.id(), k.name(), k.domain(), k.vocabulary(), k.conceptClass(), "S", k.id(),
                                    "1970-01-01", "2099-12-31");
                        }
                    });
            copy(pg, s, "concept_ancestor (ancestor_concept_id, descendant_concept_id, min_levels_of_separation,"
                    + " max_levels_of_separation)", 1, 1, seed, (p, out) -> { }, sb -> {
                        for (Concept k : CONCEPTS) {
                            row(sb, k.id(), k.id(), 0, 0);
                            if (k.parent() != 0) {
                                row(sb, k.parent(), k.id(), 1, 1);
                            }
                        }
                    });
            long[] n = new long[7];
            copy(pg, s, "person (person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth,"
                    + " race_concept_id, ethnicity_concept_id, person_source_value, gender_source_value)", firstPersonId, persons, seed,
                    (p, sb) -> {
                        LocalDate b = LocalDate.ofEpochDay(p.birthDay());
                        row(sb, p.id(), p.gender(), b.getYear(), b.getMonthValue(), b.getDayOfMonth(), 0, 0,
                                "MRN" + p.id(), p.gender() == MALE ? "M" : "F");
                    }, null);
            copy(pg, s, "observation_period (observation_period_id, person_id, observation_period_start_date,"
                    + " observation_period_end_date, period_type_concept_id)", firstPersonId, persons, seed,
                    (p, sb) -> row(sb, p.id(), p.id(), day(p.obsStart()), day(p.obsEnd()), EHR), null);
            copy(pg, s, "condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
                    + " condition_start_date, condition_type_concept_id)", firstPersonId, persons, seed, (p, sb) -> {
                        int k = 0;
                        for (long[] x : p.conditions()) {
                            row(sb, eventId(p, k++), p.id(), x[0], day(x[1]), EHR);
                            n[0]++;
                        }
                    }, null);
            copy(pg, s, "drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,"
                    + " drug_exposure_end_date, drug_type_concept_id, days_supply)", firstPersonId, persons, seed, (p, sb) -> {
                        int k = 0;
                        for (long[] x : p.drugs()) {
                            row(sb, eventId(p, k++), p.id(), x[0], day(x[1]), day(x[2]), EHR, x[2] - x[1]);
                            n[1]++;
                        }
                    }, null);
            copy(pg, s, "measurement (measurement_id, person_id, measurement_concept_id, measurement_date,"
                    + " measurement_type_concept_id, value_as_number, unit_source_value)", firstPersonId, persons, seed, (p, sb) -> {
                        int k = 0;
                        for (double[] x : p.measurements()) {
                            int concept = (int) x[0];
                            row(sb, eventId(p, k++), p.id(), concept, day((long) x[1]), EHR, format(x[2]),
                                    concept == HBA1C ? "%" : concept == SYSTOLIC_BP ? "mmHg" : "kg/m2");
                            n[2]++;
                        }
                    }, null);
            copy(pg, s, "procedure_occurrence (procedure_occurrence_id, person_id, procedure_concept_id, procedure_date,"
                    + " procedure_type_concept_id)", firstPersonId, persons, seed, (p, sb) -> {
                        int k = 0;
                        for (long[] x : p.procedures()) {
                            row(sb, eventId(p, k++), p.id(), x[0], day(x[1]), EHR);
                            n[3]++;
                        }
                    }, null);
            copy(pg, s, "visit_occurrence (visit_occurrence_id, person_id, visit_concept_id, visit_start_date,"
                    + " visit_end_date, visit_type_concept_id)", firstPersonId, persons, seed, (p, sb) -> {
                        int k = 0;
                        for (long[] x : p.visits()) {
                            row(sb, eventId(p, k++), p.id(), x[0], day(x[1]), day(x[2]), EHR);
                            n[4]++;
                        }
                    }, null);
            copy(pg, s, "observation (observation_id, person_id, observation_concept_id, observation_date,"
                    + " observation_type_concept_id)", firstPersonId, persons, seed, (p, sb) -> {
                        if (p.smokerDay() != null) {
                            row(sb, p.id(), p.id(), SMOKER, day(p.smokerDay()), EHR);
                            n[5]++;
                        }
                    }, null);
            copy(pg, s, "death (person_id, death_date, death_type_concept_id)", firstPersonId, persons, seed, (p, sb) -> {
                if (p.deathDay() != null) {
                    row(sb, p.id(), day(p.deathDay()), EHR);
                    n[6]++;
                }
            }, null);
            try (Statement st = c.createStatement()) {
                for (String t : List.of("person", "observation_period", "condition_occurrence", "drug_exposure",
                        "measurement", "procedure_occurrence", "visit_occurrence", "concept_ancestor")) {
                    st.execute("ANALYZE " + s + "." + t);
                }
            }
            c.commit();
            return new Counts(persons, n[0], n[1], n[2], n[3], n[4], n[5], n[6]);
        } catch (SQLException | RuntimeException e) {
            c.rollback();
            throw e;
        } finally {
            c.setAutoCommit(auto);
        }
    }

    /** Person {@code id}'s history for {@code seed}: the same on every call. */
    public static Person person(long seed, int id) {
        SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + id);
        int gender = r.nextBoolean() ? MALE : FEMALE;
        int age = (int) Math.min(95, Math.abs(gaussian(r) * 20 + 48));
        long birthDay = END_DAY - age * 365L - r.nextInt(365);
        long obsStart = Math.max(birthDay, FIRST_DAY + r.nextInt(3000));
        long obsEnd = END_DAY;
        Long death = null;
        if (r.nextDouble() < 0.0004 * age) {
            death = obsStart + (long) ((obsEnd - obsStart) * (0.5 + 0.5 * r.nextDouble()));
            obsEnd = death;
        }
        long span = Math.max(1, obsEnd - obsStart);
        List<long[]> conditions = new ArrayList<>();
        List<long[]> drugs = new ArrayList<>();
        List<double[]> measurements = new ArrayList<>();
        List<long[]> procedures = new ArrayList<>();
        List<long[]> visits = new ArrayList<>();
        boolean t2d = r.nextDouble() < 0.02 + 0.0025 * age;
        boolean t1d = !t2d && r.nextDouble() < 0.005;
        boolean htn = r.nextDouble() < Math.min(0.6, 0.005 * age);
        boolean mi = r.nextDouble() < 0.0008 * age;
        boolean copd = r.nextDouble() < 0.0006 * age;
        boolean pharyngitis = r.nextDouble() < 0.3;
        if (t2d) {
            long d = obsStart + r.nextLong(span);
            conditions.add(new long[] { TYPE2_DIABETES, d });
            if (r.nextDouble() < 0.8) {
                drug(drugs, METFORMIN, Math.min(obsEnd, d + r.nextInt(60)), 90 + r.nextInt(270), obsEnd);
            }
        }
        if (t1d) {
            long d = obsStart + r.nextLong(span);
            conditions.add(new long[] { TYPE1_DIABETES, d });
            drug(drugs, INSULIN, d, 365, obsEnd);
        }
        if (htn) {
            long d = obsStart + r.nextLong(span);
            conditions.add(new long[] { ESSENTIAL_HYPERTENSION, d });
            if (r.nextDouble() < 0.5) {
                drug(drugs, LISINOPRIL, Math.min(obsEnd, d + r.nextInt(30)), 30 + r.nextInt(330), obsEnd);
            }
            if (r.nextDouble() < 0.35) {
                drug(drugs, AMLODIPINE, Math.min(obsEnd, d + r.nextInt(30)), 30 + r.nextInt(330), obsEnd);
            }
        }
        if (mi) {
            long d = obsStart + r.nextLong(span);
            conditions.add(new long[] { MYOCARDIAL_INFARCTION, d });
            visits.add(new long[] { INPATIENT, d, Math.min(obsEnd, d + 3 + r.nextInt(10)) });
            if (r.nextDouble() < 0.2) {
                procedures.add(new long[] { CABG, Math.min(obsEnd, d + r.nextInt(5)) });
            }
        }
        if (copd) {
            conditions.add(new long[] { COPD, obsStart + r.nextLong(span) });
        }
        if (pharyngitis) {
            long d = obsStart + r.nextLong(span);
            conditions.add(new long[] { PHARYNGITIS, d });
            if (r.nextDouble() < 0.5) {
                drug(drugs, ACETAMINOPHEN, d, 3 + r.nextInt(5), obsEnd);
            }
        }
        if (r.nextDouble() < 0.01) {
            long d = obsStart + r.nextLong(span);
            procedures.add(new long[] { APPENDECTOMY, d });
            visits.add(new long[] { INPATIENT, d, Math.min(obsEnd, d + 2 + r.nextInt(4)) });
        }
        boolean diabetic = t1d || t2d;
        int hba1c = diabetic ? 1 + r.nextInt(4) : r.nextDouble() < 0.4 ? 1 : 0;
        for (int i = 0; i < hba1c; i++) {
            double v = diabetic ? 7.6 + 1.3 * gaussian(r) : 5.4 + 0.4 * gaussian(r);
            measurements.add(new double[] { HBA1C, obsStart + r.nextLong(span), round1(Math.max(3.5, Math.min(16, v))) });
        }
        int sbp = 1 + r.nextInt(5);
        for (int i = 0; i < sbp; i++) {
            double v = 112 + 0.25 * age + (htn ? 16 : 0) + 14 * gaussian(r);
            measurements.add(new double[] { SYSTOLIC_BP, obsStart + r.nextLong(span), Math.round(Math.max(70, Math.min(230, v))) });
        }
        if (age >= 2) {
            int bmi = r.nextInt(3);
            for (int i = 0; i < bmi; i++) {
                double v = 24 + (t2d ? 3.5 : 0) + 4.5 * gaussian(r);
                measurements.add(new double[] { BMI, obsStart + r.nextLong(span), round1(Math.max(13, Math.min(60, v))) });
            }
        }
        int outpatient = 1 + r.nextInt(8);
        for (int i = 0; i < outpatient; i++) {
            long d = obsStart + r.nextLong(span);
            visits.add(new long[] { OUTPATIENT, d, d });
        }
        if (r.nextDouble() < 0.05) {
            long d = obsStart + r.nextLong(span);
            visits.add(new long[] { INPATIENT, d, Math.min(obsEnd, d + 1 + r.nextInt(14)) });
        }
        Long smoker = age >= 15 && r.nextDouble() < (gender == MALE ? 0.45 : 0.05) ? obsStart + r.nextLong(span) : null;
        return new Person(id, gender, LocalDate.ofEpochDay(birthDay).getYear(), birthDay, obsStart, obsEnd, death,
                conditions, drugs, measurements, procedures, visits, smoker);
    }

    private static void drug(List<long[]> drugs, int concept, long start, int days, long obsEnd) {
        drugs.add(new long[] { concept, start, Math.min(obsEnd, start + days) });
    }

    private static double gaussian(SplittableRandom r) {
        // Box-Muller on the splittable generator (java.util.Random's nextGaussian would need a second generator)
        double u = 1 - r.nextDouble();
        double v = r.nextDouble();
        return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }

    private static double round1(double v) {
        return Math.round(v * 10) / 10.0;
    }

    private static String format(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }

    /** Ids of a person's events: 64 slots per person, unique in the table, stable across runs. */
    private static long eventId(Person p, int k) {
        if (k >= 64) {
            throw new IllegalStateException("person " + p.id() + " has more than 64 rows in one table");
        }
        return (long) p.id() * 64 + k;
    }

    private static String day(long epochDay) {
        return LocalDate.ofEpochDay(epochDay).toString();
    }

    private static void row(StringBuilder sb, Object... values) {
        for (int i = 0; i < values.length; i++) {
            if (i > 0) {
                sb.append('\t');
            }
            sb.append(values[i]);
        }
        sb.append('\n');
    }

    private static void copy(PGConnection pg, String schema, String target, int first, int persons, long seed,
            BiConsumer<Person, StringBuilder> perPerson, java.util.function.Consumer<StringBuilder> once)
            throws SQLException {
        CopyIn in = pg.getCopyAPI().copyIn("COPY " + schema + "." + target + " FROM STDIN (FORMAT text)");
        try {
            StringBuilder sb = new StringBuilder(1 << 16);
            if (once != null) {
                once.accept(sb);
            } else {
                for (int id = first; id < first + persons; id++) {
                    perPerson.accept(person(seed, id), sb);
                    if (sb.length() > 1 << 20) {
                        write(in, sb);
                    }
                }
            }
            write(in, sb);
            in.endCopy();
        } finally {
            if (in.isActive()) {
                in.cancelCopy();
            }
        }
    }

    private static void write(CopyIn in, StringBuilder sb) throws SQLException {
        byte[] b = sb.toString().getBytes(StandardCharsets.UTF_8);
        in.writeToCopy(b, 0, b.length);
        sb.setLength(0);
    }
}
