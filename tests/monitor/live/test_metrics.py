"""The metric set: names in base units, bounded labels, a stream's series gone with it."""

from __future__ import annotations

from monitor.live.metrics import MonitorMetrics
from monitor.live.state import ALERT, StateParams


def test_a_streams_series_are_in_base_units_and_leave_with_the_stream() -> None:
    m = MonitorMetrics()
    s = m.stream("cam1")
    s.audio_dropped(0.5)
    s.video_frames_dropped(3)
    s.set_state(ALERT, "voice")
    text = m.exposition().decode()
    assert 'deepfake_audio_dropped_seconds_total{stream="cam1"} 0.5' in text
    assert 'deepfake_video_frames_dropped_total{stream="cam1"} 3.0' in text
    assert 'deepfake_verdict_modality{modality="voice",stream="cam1"} 1.0' in text
    assert 'deepfake_verdict_modality{modality="face",stream="cam1"} 0.0' in text
    m.remove_stream("cam1")
    assert 'stream="cam1"' not in m.exposition().decode()


def test_process_wide_series_exist_before_their_first_event() -> None:
    m = MonitorMetrics()
    m.set_thresholds(StateParams(alert_on=0.9, alert_off=0.7))
    m.set_build_info("1.2.3", "ab" * 32, "v1 16000Hz 2s/1s K4x112px", "onnxruntime")
    m.set_build_info("1.2.3", "cd" * 32, "v1 16000Hz 2s/1s K8x224px", "tensorrt")  # replaced
    text = m.exposition().decode()
    # counters an alert takes increase() of must start at 0, or the first event is missed
    assert 'deepfake_webhook_events_total{outcome="failed"} 0.0' in text
    assert 'deepfake_events_total{state="ALERT"} 0.0' in text
    assert 'deepfake_state_threshold{head="audio",threshold="alert_on"} 0.9' in text
    assert text.count("deepfake_build_info{") == 1 and 'backend="tensorrt"' in text
