{#- Combinations of `columns` that occur more than once: the model's grain is broken. -#}
{% test unique_combination(model, columns) %}
    {{ repeated_keys(model, columns) }}
{% endtest %}
