"""The index beside the graph: the text index (search), the figures the aggregations need, the
series summaries, the activities by time; fed by the writer after each batch."""
