"""The push channel end to end with Redis on the web host itself (the
README's lead path): the tests of molecule/push_tests.py that depend on
where Redis runs or on the one-host wiring. The load through Apache reloads
and a killed sidecar is the fleet's (its web hosts are wired the same)."""

from push_tests import (  # noqa: F401 (pytest collects the imported tests)
    test_a_client_past_the_history_is_told_to_reset,
    test_a_client_that_comes_back_gets_exactly_what_it_missed,
    test_a_private_channel_refuses_bad_tokens_before_any_message,
    test_a_redis_restart_loses_nothing_and_publishing_fails_fast_meanwhile,
    test_a_signed_token_opens_its_private_channel,
    test_a_token_subscription_ends_when_its_token_expires,
    test_check_mode_reports_no_change_on_a_converged_host,
    test_publishing_while_redis_is_down_is_a_quick_clear_error,
    test_redis_killed_outright_while_publishing_loses_nothing_acknowledged,
    test_the_shared_secrets_are_readable_by_the_daemon_group_only,
    test_what_the_app_publishes_reaches_a_subscriber_through_apache,
    test_when_redis_loses_its_data_a_returning_client_resets,
)
