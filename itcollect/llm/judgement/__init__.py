"""The LLM judgement of one answer (MQM error spans, compliance, ratings): its schema, its parser and
what its verdicts mean. Shared by the judge stage, the filter's judge rules, the review desk and stats."""
