{#- Values that come from outside the SQL (vars, mostly) reach a statement only through these
    checks, as typed literals: a var that is not what it claims to be stops the compile with an
    error naming it, whoever runs dbt and however they pass it. -#}

{#- A whole number (not a boolean, not a string of digits) at least `min`, as a literal. -#}
{% macro whole_number(value, what, min=0) -%}
    {%- if value is not integer or value < min -%}
        {{ exceptions.raise_compiler_error(what ~ ": a whole number of at least " ~ min ~ ", not '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}

{#- A calendar date, given as a date or as text YYYY-MM-DD, as its YYYY-MM-DD text (nothing else can
    then sit inside the quotes of a date literal). -#}
{% macro iso_date(value, what) -%}
    {%- set text = value | string -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])', text) -%}
        {{ exceptions.raise_compiler_error(what ~ ": a date YYYY-MM-DD, not '" ~ text ~ "'") }}
    {%- endif -%}
    {{ return(text) }}
{%- endmacro %}

{#- An integer var of the project, checked where it is read (none when unset and no default). -#}
{% macro int_var(name, default=none, min=0) -%}
    {%- set value = var(name, default) -%}
    {{ return(none if value is none else whole_number(value, 'var ' ~ name, min)) }}
{%- endmacro %}
