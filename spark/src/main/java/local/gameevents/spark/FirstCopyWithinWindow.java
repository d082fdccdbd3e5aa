package local.gameevents.spark;

import java.sql.Timestamp;

import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.ExpiredTimerInfo;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;

import scala.collection.Iterator;

/**
 * Deduplication within a window of arrival time, for transformWithState in event-time mode.
 *
 * <p>Grouped by the deduplication key, each micro-batch passes on the first copy of a key that is not in the state
 * and remembers the key until the watermark passes its arrival time + window: one value and one event-time timer per
 * key. Expired keys are found through the timers' time-ordered index, so the cost of expiry is proportional to the
 * keys that expire, not to the size of the state (dropDuplicatesWithinWatermark scans every key in every batch).
 *
 * <p>Among copies in one batch the earliest by (arrival time, topic, partition, offset) is kept, so that a batch
 * replayed after a crash keeps the same one. The arrival time is the column {@code timeColumn}, the watermarked
 * column of the input.
 */
public final class FirstCopyWithinWindow extends StatefulProcessor<byte[], Row, Row> {
    private static final long serialVersionUID = 1L;

    private final long windowMillis;
    private final String timeColumn;
    private transient ValueState<Long> expiresAt;

    public FirstCopyWithinWindow(long windowMillis, String timeColumn) {
        if (windowMillis <= 0) {
            throw new IllegalArgumentException("the window must be positive, got " + windowMillis + " ms");
        }
        this.windowMillis = windowMillis;
        this.timeColumn = timeColumn;
    }

    @Override
    public void init(OutputMode outputMode, TimeMode timeMode) {
        expiresAt = getHandle().getValueState("expires_at", Encoders.LONG(), TTLConfig.NONE());
    }

    @Override
    public Iterator<Row> handleInputRows(byte[] key, Iterator<Row> rows, TimerValues timerValues) {
        if (expiresAt.exists()) {
            return scala.package$.MODULE$.Iterator().empty();
        }
        Row first = rows.next();
        while (rows.hasNext()) {
            Row other = rows.next();
            if (earlier(other, first)) {
                first = other;
            }
        }
        Timestamp arrived = first.getAs(timeColumn);
        long expiry = arrived.getTime() + windowMillis;
        expiresAt.update(expiry);
        getHandle().registerTimer(expiry);
        return scala.package$.MODULE$.Iterator().single(first);
    }

    @Override
    public Iterator<Row> handleExpiredTimer(byte[] key, TimerValues timerValues, ExpiredTimerInfo expiredTimerInfo) {
        expiresAt.clear();
        return scala.package$.MODULE$.Iterator().empty();
    }

    private boolean earlier(Row a, Row b) {
        int byTime = a.<Timestamp>getAs(timeColumn).compareTo(b.<Timestamp>getAs(timeColumn));
        if (byTime != 0) {
            return byTime < 0;
        }
        int byTopic = a.<String>getAs("topic").compareTo(b.<String>getAs("topic"));
        if (byTopic != 0) {
            return byTopic < 0;
        }
        int byPartition = Integer.compare(a.<Integer>getAs("partition"), b.<Integer>getAs("partition"));
        if (byPartition != 0) {
            return byPartition < 0;
        }
        return a.<Long>getAs("offset") < b.<Long>getAs("offset");
    }
}
