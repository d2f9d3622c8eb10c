package org.hospitalhub.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * bench/RESULTS.md holds two benchmarks' figures: the delivery benchmark's (bench/run.sh, the file's top) and the qc
 * benchmark's (bench/run-qc.sh, a section between two markers). Each writer replaces only its own part.
 */
final class ResultsFile {

    static final String QC_START = "<!-- qc-benchmark:start (written by bench/run-qc.sh; bench/run.sh keeps it) -->";
    static final String QC_END = "<!-- qc-benchmark:end -->";

    private ResultsFile() {
    }

    /**
     * The delivery benchmark's new text followed by the other benchmarks' sections of the existing file (qc, and
     * federation's, written by bench/run-federation.sh between markers of the same shape), if it has them.
     */
    static String keepingQcSection(Path file, String deliveryText) throws IOException {
        String others = otherSections(file);
        return others == null ? deliveryText : deliveryText.stripTrailing() + "\n\n" + others + "\n";
    }

    private static String otherSections(Path file) throws IOException {
        if (!Files.exists(file)) {
            return null;
        }
        String old = Files.readString(file);
        int a = old.indexOf(QC_START);
        int f = old.indexOf("<!-- federation-benchmark:start");
        int from = a < 0 ? f : f < 0 ? a : Math.min(a, f);
        return from < 0 ? null : old.substring(from).strip();
    }

    /** Writes the qc section: replaces the one between the markers, or appends it; the rest of the file is kept. */
    static void writeQcSection(Path file, String qcText) throws IOException {
        String section = QC_START + "\n" + qcText.strip() + "\n" + QC_END;
        String old = Files.exists(file) ? Files.readString(file) : "";
        int a = old.indexOf(QC_START);
        int b = old.indexOf(QC_END);
        String out;
        if (a >= 0 && b > a) {
            out = old.substring(0, a) + section + old.substring(b + QC_END.length());
        } else {
            out = (old.isBlank() ? "" : old.stripTrailing() + "\n\n") + section + "\n";
        }
        Files.writeString(file, out);
    }
}
