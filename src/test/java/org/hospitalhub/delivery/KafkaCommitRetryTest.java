package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

/** Which offsets of a refused asynchronous commit are asked again: only those no later batch's commit superseded. */
class KafkaCommitRetryTest {

    private static final TopicPartition P0 = new TopicPartition("his.charges", 0);
    private static final TopicPartition P1 = new TopicPartition("his.charges", 1);
    private static final TopicPartition P2 = new TopicPartition("his.charges", 2);

    @Test
    void aRefusedCommitIsAskedAgainOnlyWhereNothingNewerWasAskedFor() {
        Map<TopicPartition, OffsetAndMetadata> failed = new LinkedHashMap<>();
        failed.put(P0, new OffsetAndMetadata(120));
        failed.put(P1, new OffsetAndMetadata(80));
        failed.put(P2, new OffsetAndMetadata(7));
        Map<TopicPartition, Long> asked = new HashMap<>();
        asked.put(P0, 120L); // the last batch before a quiet spell: still the latest, ask again
        asked.put(P1, 95L); // a later batch asked for 95 since: that commit covers 80
        // P2: not known to this consumer any more (its map was for another generation): left to the next reader

        Map<TopicPartition, OffsetAndMetadata> again = KafkaBatch.notSuperseded(failed, asked);

        assertEquals(Map.of(P0, new OffsetAndMetadata(120)), again);
        assertEquals(Map.of(), KafkaBatch.notSuperseded(null, asked), "a failure that names no offsets asks for nothing");
        asked.put(P0, 121L);
        assertEquals(Map.of(), KafkaBatch.notSuperseded(failed, asked), "everything superseded: nothing asked again");
    }
}
